package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// apiClient talks HTTP to agentd's Unix socket and decodes only what the
// benchmark looks at, so that the client's own decoding costs little of what is
// measured (a full core/v1 PodList of 1000 pods takes tens of ms to decode).
type apiClient struct {
	hc *http.Client
}

func newAPIClient(socket string) *apiClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 2,
	}
	return &apiClient{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *apiClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agentd"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// podList is the part of a core/v1 PodList the benchmark reads.
type podList struct {
	Items []struct {
		Metadata struct {
			Name              string  `json:"name"`
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Status struct {
			Phase             string `json:"phase"`
			ContainerStatuses []struct {
				Name         string `json:"name"`
				ContainerID  string `json:"containerID"`
				RestartCount int    `json:"restartCount"`
				Ready        bool   `json:"ready"`
				State        struct {
					Running *struct{} `json:"running"`
				} `json:"state"`
			} `json:"containerStatuses"`
		} `json:"status"`
	} `json:"items"`
}

// podIdentity is what must not change across a restore: every container's ID and
// restart count; "" when the pod is not Running with all containers running and ready.
type snapshot struct {
	total   int               // pods listed
	running map[string]string // pod name -> identity, Running pods only
}

func (c *apiClient) pods(ctx context.Context) (*snapshot, error) {
	body, err := c.get(ctx, "/api/v1/pods")
	if err != nil {
		return nil, err
	}
	return parsePods(body)
}

func parsePods(body []byte) (*snapshot, error) {
	var l podList
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("decoding the pod list: %w", err)
	}
	s := &snapshot{total: len(l.Items), running: map[string]string{}}
	for _, p := range l.Items {
		if p.Metadata.DeletionTimestamp != nil || p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) == 0 {
			continue
		}
		var ids []string
		ok := true
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || !cs.Ready || cs.ContainerID == "" {
				ok = false
				break
			}
			ids = append(ids, fmt.Sprintf("%s=%s#%d", cs.Name, cs.ContainerID, cs.RestartCount))
		}
		if ok {
			sort.Strings(ids)
			s.running[p.Metadata.Name] = strings.Join(ids, ",")
		}
	}
	return s, nil
}

// sameAs reports whether s lists exactly the pods of before, all Running with the
// same containers; else a short reason.
func (s *snapshot) sameAs(before *snapshot) (bool, string) {
	if s.total != before.total {
		return false, fmt.Sprintf("%d pods listed, %d before", s.total, before.total)
	}
	changed, missing := 0, 0
	example := ""
	for name, id := range before.running {
		now, ok := s.running[name]
		switch {
		case !ok:
			missing++
			if example == "" {
				example = name + " not Running"
			}
		case now != id:
			changed++
			if example == "" {
				example = fmt.Sprintf("%s: %s, before %s", name, now, id)
			}
		}
	}
	if changed+missing > 0 {
		return false, fmt.Sprintf("%d pods not Running, %d with other containers or restart counts (e.g. %s)", missing, changed, example)
	}
	return true, ""
}

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

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
)

// apiClient GETs agentd's API on its Unix socket and returns the body undecoded:
// a restore's time ends when the answer has arrived, and decoding a list of 1000
// pods costs the client tens of ms that are not agentd's.
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

// snapshot is what must not change across a restore: the pods listed, and for
// each Running pod whose containers all run and are ready, their IDs and
// restart counts.
type snapshot struct {
	total   int               // pods listed
	running map[string]string // pod name -> its containers' identity, Running pods only
	podIPs  map[string]string // pod name -> status.podIP
}

func (c *apiClient) pods(ctx context.Context) (*snapshot, error) {
	body, err := c.get(ctx, api.PathPods)
	if err != nil {
		return nil, err
	}
	return parsePods(body)
}

func parsePods(body []byte) (*snapshot, error) {
	var l corev1.PodList
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("decoding the pod list: %w", err)
	}
	s := &snapshot{total: len(l.Items), running: map[string]string{}, podIPs: map[string]string{}}
	for _, p := range l.Items {
		s.podIPs[p.Name] = p.Status.PodIP
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
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
			s.running[p.Name] = strings.Join(ids, ",")
		}
	}
	return s, nil
}

// info returns agentd's Info (what `agentctl info` prints).
func (c *apiClient) info(ctx context.Context) (*api.Info, error) {
	body, err := c.get(ctx, api.PathInfo)
	if err != nil {
		return nil, err
	}
	var i api.Info
	return &i, json.Unmarshal(body, &i)
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

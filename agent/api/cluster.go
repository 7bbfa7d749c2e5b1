package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxManifest bounds an applied manifest, as the spec package bounds a pod's.
const maxManifest = 1 << 20

// clusterTimeout bounds init, join and leave, which wait for etcd members to start and for the cluster to accept
// member changes.
const clusterTimeout = 2 * time.Minute

func (s *Server) clusterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathCluster, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.b.ClusterStatus()) })
	mux.HandleFunc("POST "+PathCluster+"/init", membershipChange(s.b.ClusterInit))
	mux.HandleFunc("POST "+PathCluster+"/join", membershipChange(s.b.ClusterJoin))
	mux.HandleFunc("POST "+PathCluster+"/leave", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
		defer cancel()
		if err := s.b.ClusterLeave(ctx, r.URL.Query().Get("force") == "true"); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, s.b.ClusterStatus())
	})
	mux.HandleFunc("POST "+PathCluster+"/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req TokenRequest
		if !readJSON(w, r, &req) {
			return
		}
		answer[*TokenCreated](w)(s.b.CreateToken(r.Context(), req))
	})
	mux.HandleFunc("GET "+PathCluster+"/tokens", func(w http.ResponseWriter, r *http.Request) {
		answer[[]TokenInfo](w)(s.b.Tokens(r.Context()))
	})
	mux.HandleFunc("DELETE "+PathCluster+"/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.b.DeleteToken(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &Status{Kind: "Status", Status: "Success", Code: http.StatusOK})
	})
	mux.HandleFunc("GET "+PathCluster+"/certs", func(w http.ResponseWriter, _ *http.Request) {
		answer[[]CertInfo](w)(s.b.Certs())
	})
	mux.HandleFunc("GET "+PathNodes, func(w http.ResponseWriter, r *http.Request) {
		nodes, err := s.b.Nodes(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, Items: nodes})
	})
	mux.HandleFunc("DELETE "+PathNodes+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.b.DeleteNode(r.Context(), r.PathValue("name"), r.URL.Query().Get("force") == "true"); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &Status{Kind: "Status", Status: "Success", Code: http.StatusOK})
	})
	mux.HandleFunc("GET "+PathDaemonSets, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.b.DaemonSets(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &appsv1.DaemonSetList{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSetList"}, Items: list})
	})
	mux.HandleFunc("POST "+PathDaemonSets, func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
		if err != nil {
			writeError(w, fmt.Errorf("%w: read manifest: %v", ErrBadRequest, err))
			return
		}
		if len(data) > maxManifest {
			writeError(w, fmt.Errorf("%w: manifest larger than %d bytes", ErrBadRequest, maxManifest))
			return
		}
		answer[*ApplyResult](w)(s.b.ApplyDaemonSet(r.Context(), data))
	})
	mux.HandleFunc("DELETE /apis/apps/v1/namespaces/{namespace}/daemonsets/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.b.DeleteDaemonSet(r.Context(), r.PathValue("namespace"), r.PathValue("name")); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, &Status{Kind: "Status", Status: "Success", Code: http.StatusOK})
	})
}

// membershipChange serves init or join: a JSON request, up to clusterTimeout, answered with the cluster status.
func membershipChange[Req any](change func(context.Context, Req) (ClusterStatus, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !readJSON(w, r, &req) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
		defer cancel()
		answer[ClusterStatus](w)(change(ctx, req))
	}
}

// answer writes v, or err as a Status.
func answer[T any](w http.ResponseWriter) func(T, error) {
	return func(v T, err error) {
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, v)
	}
}

// readJSON decodes a request body of one JSON object into v; an empty body leaves v as it is (the defaults). A
// field v does not have is an error, not dropped: a newer agentctl's option, or a misspelt one, that this agentd
// would ignore (a join as a worker instead of an etcd member) must fail the request.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	switch {
	case err == io.EOF:
		return true
	case err == nil && dec.Decode(&json.RawMessage{}) != io.EOF:
		err = errors.New("more than one JSON value")
	case err == nil:
		return true
	}
	writeError(w, fmt.Errorf("%w: request body: %v", ErrBadRequest, err))
	return false
}

// ClusterStatus returns this node's cluster status.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var st ClusterStatus
	return &st, c.getJSON(ctx, PathCluster, nil, &st)
}

// ClusterInit starts a new cluster with this node as its first member.
func (c *Client) ClusterInit(ctx context.Context, req ClusterInitRequest) (*ClusterStatus, error) {
	var st ClusterStatus
	return &st, c.send(ctx, http.MethodPost, PathCluster+"/init", "application/json", jsonBody(req), &st)
}

// ClusterJoin joins a cluster.
func (c *Client) ClusterJoin(ctx context.Context, req ClusterJoinRequest) (*ClusterStatus, error) {
	var st ClusterStatus
	return &st, c.send(ctx, http.MethodPost, PathCluster+"/join", "application/json", jsonBody(req), &st)
}

// ClusterLeave takes this node out of its cluster; force leaves even when the cluster does not accept it.
func (c *Client) ClusterLeave(ctx context.Context, force bool) error {
	path := PathCluster + "/leave"
	if force {
		path += "?force=true"
	}
	return c.send(ctx, http.MethodPost, path, "application/json", nil, nil)
}

// CreateToken creates a bootstrap token.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*TokenCreated, error) {
	var out TokenCreated
	return &out, c.send(ctx, http.MethodPost, PathCluster+"/tokens", "application/json", jsonBody(req), &out)
}

// Tokens lists the cluster's bootstrap tokens.
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	return out, c.getJSON(ctx, PathCluster+"/tokens", nil, &out)
}

// DeleteToken revokes a bootstrap token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.send(ctx, http.MethodDelete, PathCluster+"/tokens/"+url.PathEscape(id), "", nil, nil)
}

// Certs describes the node's cluster certificates.
func (c *Client) Certs(ctx context.Context) ([]CertInfo, error) {
	var out []CertInfo
	return out, c.getJSON(ctx, PathCluster+"/certs", nil, &out)
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]corev1.Node, error) {
	var l corev1.NodeList
	return l.Items, c.getJSON(ctx, PathNodes, nil, &l)
}

// DeleteNode removes a node that is gone for good; force removes a Ready one too (its credentials revoked).
func (c *Client) DeleteNode(ctx context.Context, name string, force bool) error {
	path := PathNodes + "/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	return c.send(ctx, http.MethodDelete, path, "", nil, nil)
}

// DaemonSets lists the cluster's DaemonSets with their status.
func (c *Client) DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error) {
	var l appsv1.DaemonSetList
	return l.Items, c.getJSON(ctx, PathDaemonSets, nil, &l)
}

// ApplyDaemonSet creates or replaces the DaemonSet of a YAML or JSON manifest.
func (c *Client) ApplyDaemonSet(ctx context.Context, manifest []byte) (*ApplyResult, error) {
	var res ApplyResult
	return &res, c.send(ctx, http.MethodPost, PathDaemonSets, "application/yaml", bytes.NewReader(manifest), &res)
}

// DeleteDaemonSet deletes a DaemonSet; its pods stop on every node.
func (c *Client) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	return c.send(ctx, http.MethodDelete, "/apis/apps/v1/namespaces/"+url.PathEscape(namespace)+"/daemonsets/"+url.PathEscape(name), "", nil, nil)
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// send makes a request with a body and decodes the answer into out (when not nil).
func (c *Client) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	resp, err := c.request(ctx, method, path, nil, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

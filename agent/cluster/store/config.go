package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// ClusterConfig is the cluster's settings, chosen at `cluster init` and kept at /agentd/config: every node reads
// them, only the admin writes them.
type ClusterConfig struct {
	// PodSecurity is the Pod Security Standards level DaemonSet pods must meet: privileged, baseline or restricted.
	PodSecurity string `json:"podSecurity"`
	// CertValidity is how long the certificates the cluster issues are valid (they renew at 70–90 % of it).
	CertValidity Duration  `json:"certValidity"`
	Created      time.Time `json:"created"`
}

// Duration is a time.Duration that reads and writes as "8760h0m0s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// PutClusterConfig writes the cluster's settings. c must be the admin's client.
func (c *Client) PutClusterConfig(ctx context.Context, cfg ClusterConfig) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	if _, err := c.cli.Put(ctx, configKey, string(b)); err != nil {
		return fmt.Errorf("write the cluster's settings: %w", c.classify(err))
	}
	return nil
}

// ClusterConfig reads the cluster's settings, or ErrNotFound.
func (c *Client) ClusterConfig(ctx context.Context) (*ClusterConfig, error) {
	ctx, cancel := c.opCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, configKey)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's settings: %w", c.classify(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("the cluster's settings (%s): %w", configKey, ErrNotFound)
	}
	var cfg ClusterConfig
	if err := json.Unmarshal(resp.Kvs[0].Value, &cfg); err != nil {
		return nil, fmt.Errorf("the cluster's settings (%s) do not decode: %w", configKey, err)
	}
	return &cfg, nil
}

// Package etcdmember is agent-etcd: the process that runs this node's etcd member in cluster mode, started and
// supervised by agentd (package store) over the protocol of package etcdproc. It is the only package that imports
// etcd's server (go.etcd.io/etcd/server/v3/embed); agentd does not link it.
package etcdmember

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"

	"github.com/agentd-project/agentd/agent/cluster/etcdproc"
	"github.com/agentd-project/agentd/agent/cluster/internal/zaplog"
)

// streamDrainTimeout bounds how long a quiesce waits for stream requests in progress (etcd's own request timeout
// is about as long).
const streamDrainTimeout = 10 * time.Second

// Main runs agent-etcd: args are its command-line arguments (without the program name). It returns the exit
// code: 0 after the member stopped by request or by its removal from the cluster, 1 when it failed or stopped by
// itself otherwise, 2 for a usage error.
func Main(args []string, version string) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "version") {
		fmt.Println(etcdproc.BinaryName, version)
		return 0
	}
	if len(args) != 0 {
		fmt.Fprintf(os.Stderr, "usage: %s (no arguments)\n\n%s runs cluster mode's etcd member for agentd, which starts it with its configuration on\nstandard input; it is not meant to be run by hand.\n",
			etcdproc.BinaryName, etcdproc.BinaryName)
		return 2
	}
	// agentd stops the member in order (leaving the cluster first, when it does); a signal meant for agentd's
	// terminal does not reach this process group, and one sent to this process stops the member gracefully.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	out := &writer{enc: json.NewEncoder(os.Stdout)}
	return run(bufio.NewReader(os.Stdin), out, os.Stderr, sigs)
}

// writer writes Messages, one whole line at a time.
type writer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *writer) send(m etcdproc.Message) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(m) // agentd gone: nobody to tell; end of input stops the member
}

func run(in *bufio.Reader, out *writer, stderr io.Writer, sigs <-chan os.Signal) int {
	line, err := in.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: fmt.Sprintf("read the configuration from standard input: %v", err)})
		return 1
	}
	var cfg etcdproc.Config
	if err := json.Unmarshal(line, &cfg); err != nil {
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: fmt.Sprintf("parse the configuration: %v", err)})
		return 1
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(cfg.LogLevel)}))

	ec, err := embedConfig(&cfg, log)
	if err != nil {
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: err.Error()})
		return 1
	}
	streams := &streamCloser{closing: make(chan struct{})}
	ec.GRPCAdditionalServerOptions = []grpc.ServerOption{grpc.ChainStreamInterceptor(streams.intercept),
		grpc.ChainUnaryInterceptor(streams.interceptUnary)}

	// Requests are read from the start, so that end of input (agentd gone) stops a member that is still starting.
	reqs := make(chan etcdproc.Request)
	go func() {
		defer close(reqs)
		for {
			b, err := in.ReadBytes('\n')
			if len(b) > 0 {
				var r etcdproc.Request
				if jerr := json.Unmarshal(b, &r); jerr != nil {
					log.Error(jerr, "Ignoring a request agentd sent that is not JSON")
				} else {
					reqs <- r
				}
			}
			if err != nil {
				return
			}
		}
	}()

	e, err := embed.StartEtcd(ec)
	if err != nil {
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: fmt.Sprintf("start etcd (data %s, peer %s, client %s): %v",
			ec.Dir, cfg.PeerURL, cfg.ClientURL, err)})
		return 1
	}
	m := &member{e: e, streams: streams, log: log}
	streams.setStopping(e.Server.StoppingNotify())

	// Starting: agentd decides how long to wait (it kills the process then); end of input or a signal gives up.
	select {
	case <-e.Server.ReadyNotify():
		out.send(etcdproc.Message{Kind: etcdproc.KindReady, ID: e.Server.MemberID().String(), Cluster: e.Server.Cluster().ID().String()})
	case err := <-e.Err():
		m.close()
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: fmt.Sprintf("etcd failed while starting: %v", err)})
		return 1
	case <-e.Server.StopNotify():
		m.close()
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: "etcd stopped while starting (see its log lines before this one)"})
		return 1
	case r, ok := <-reqs:
		m.close()
		why := "agentd closed its end before the member was ready"
		if ok {
			why = fmt.Sprintf("agentd sent %q before the member was ready", r.Op)
		}
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: why})
		return 1
	case s := <-sigs:
		m.close()
		out.send(etcdproc.Message{Kind: etcdproc.KindFailed, Error: fmt.Sprintf("stopped by signal %v before the member was ready", s)})
		return 1
	}

	errc := e.Err()
	for {
		select {
		case r, ok := <-reqs:
			if !ok || r.Op == etcdproc.OpClose {
				m.close()
				out.send(etcdproc.Message{Kind: etcdproc.KindStopped, Removed: m.removed()})
				return 0
			}
			out.send(m.handle(r))
		case s := <-sigs:
			log.Info("Stopping the etcd member on a signal", "signal", s.String())
			m.close()
			out.send(etcdproc.Message{Kind: etcdproc.KindStopped, Removed: m.removed()})
			return 0
		case err, ok := <-errc:
			// A listener that stopped serving; etcd itself goes on, as it did inside agentd.
			if !ok {
				errc = nil
				continue
			}
			log.Error(err, "etcd reported an error")
		case <-e.Server.StopNotify():
			// By itself: etcd stops a member that was removed from the cluster, and on fatal errors.
			removed := m.removed()
			m.close()
			out.send(etcdproc.Message{Kind: etcdproc.KindStopped, Removed: removed})
			if removed {
				return 0
			}
			return 1
		}
	}
}

// member is the running etcd member.
type member struct {
	e       *embed.Etcd
	streams *streamCloser
	log     logr.Logger
	closed  bool
}

func (m *member) handle(r etcdproc.Request) etcdproc.Message {
	reply := etcdproc.Message{Kind: etcdproc.KindReply, Op: r.Op}
	switch r.Op {
	case etcdproc.OpQuiesce:
		reply.OK = m.quiesce(r.Unary)
	case etcdproc.OpResume:
		m.streams.resume()
		reply.OK = true
	case etcdproc.OpTransferLeadership:
		if err := m.e.Server.TryTransferLeadershipOnShutdown(); err != nil {
			reply.Error = err.Error()
		} else {
			reply.OK = true
		}
	case etcdproc.OpStatus:
		reply.Leader = m.e.Server.Leader() == m.e.Server.MemberID()
		reply.OK = true
	default:
		reply.Error = fmt.Sprintf("unknown operation %q", r.Op)
	}
	return reply
}

// quiesce ends the member's client streams and waits for the requests on them in progress: before the member
// stops, by close (unary: refusing every request) or by its removal from the cluster (agentd's Leave: the leaving
// node still asks the cluster through it), which etcd carries out without asking.
func (m *member) quiesce(unary bool) bool {
	if !m.streams.stop(unary, streamDrainTimeout) {
		m.log.Info("Stopping the etcd member while a client request is still being served")
		return false
	}
	return true
}

// close stops the member and waits until it released its ports and data dir. A leader first hands leadership to
// another member, so the others need not wait for an election; when that member does not answer (it is stopping
// too), etcd gives up after its request timeout, a little over 5 s.
func (m *member) close() {
	if m.closed {
		return
	}
	m.closed = true
	m.quiesce(true)
	m.e.Close()
}

// removed says whether the member is no longer in its own view of the cluster: it applied its own removal.
func (m *member) removed() bool {
	return m.e.Server.Cluster().Member(m.e.Server.MemberID()) == nil
}

// embedConfig turns cfg, which agentd validated, into etcd's configuration.
func embedConfig(cfg *etcdproc.Config, log logr.Logger) (*embed.Config, error) {
	urls := map[string]*url.URL{}
	for which, s := range map[string]string{"peer": cfg.PeerURL, "client": cfg.ClientURL, "listen peer": cfg.ListenPeerURL,
		"listen client": cfg.ListenClientURL} {
		u, err := url.Parse(s)
		if err != nil || s == "" {
			return nil, fmt.Errorf("etcd %s URL %q: %v", which, s, err)
		}
		urls[which] = u
	}
	if cfg.Name == "" || cfg.DataDir == "" || cfg.CAFile == "" || cfg.NodeFile == "" || cfg.PeerFile == "" || cfg.PeerCN == "" {
		return nil, errors.New("configuration lacks the name, data dir or certificate files")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.AdvertisePeerUrls = []url.URL{*urls["peer"]}
	ec.ListenPeerUrls = []url.URL{*urls["listen peer"]}
	ec.AdvertiseClientUrls = []url.URL{*urls["client"]}
	ec.ListenClientUrls = []url.URL{*urls["listen client"]}
	ec.InitialCluster = cfg.InitialCluster
	ec.InitialClusterToken = cfg.ClusterToken
	ec.ClusterState = embed.ClusterStateFlagExisting
	if cfg.New {
		ec.ClusterState = embed.ClusterStateFlagNew
	}
	ec.TickMs = cfg.HeartbeatMs
	ec.ElectionMs = cfg.ElectionMs
	// Node heartbeats rewrite a key every lease TTL; without compaction etcd keeps every old revision until its
	// 2 GiB quota is full. Watches reconnecting after an hour relist (see store.WatchDaemonSets).
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zaplog.New(log, "etcd", zaplog.ServerLevels))

	// Mutual TLS on both listeners, on loopback too: a local user or a pod that reaches a port gets nothing without
	// a certificate of the cluster's CA. etcd reads the certificate files at every handshake, so renewed ones are
	// used without a restart. The peer listener takes only peer certificates: a node's own certificate cannot make
	// its holder a member.
	ec.ClientTLSInfo = transport.TLSInfo{CertFile: cfg.NodeFile, KeyFile: cfg.NodeFile, TrustedCAFile: cfg.CAFile, ClientCertAuth: true}
	ec.PeerTLSInfo = transport.TLSInfo{CertFile: cfg.PeerFile, KeyFile: cfg.PeerFile, TrustedCAFile: cfg.CAFile,
		ClientCertAuth: true, AllowedCNs: []string{cfg.PeerCN}}
	// The HTTP gateway would serve every client under the member's own identity, whatever certificate it showed.
	ec.EnableGRPCGateway = false
	return ec, nil
}

package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/cluster/etcdproc"
)

// Member is this node's running etcd member: an agent-etcd process that this one started and supervises. Close
// stops it; it is safe to call from any goroutine, more than once. The member stops with this process: agent-etcd
// stops it when its standard input closes.
type Member struct {
	cfg     MemberConfig
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	id      uint64
	cluster string

	replies chan etcdproc.Message // answers to call, in order
	stopped chan struct{}         // closed when agent-etcd said Stopped, or exited
	failed  chan struct{}         // closed when it exited by itself, not removed from the cluster
	exited  chan struct{}         // closed when the process was reaped; exitErr is set before
	exitErr error

	callMu    sync.Mutex // one request at a time
	closeOnce sync.Once
	closing   atomic.Bool // set when Close begins, so that removed can tell a stop by Close from one by etcd
	removedBy atomic.Bool // agent-etcd's Stopped said the member was no longer in its cluster
	output    tail        // agent-etcd's plain-text output (a panic), for the error when it dies
}

// Timeouts of the conversation with agent-etcd. A request waits for the member's streams (streamDrainTimeout in
// agent-etcd, 10 s) or for etcd's leadership transfer (its request timeout, a little over 5 s); Close waits for
// both and for etcd to stop.
const (
	callTimeout  = 30 * time.Second
	closeTimeout = 60 * time.Second
)

// memberBinary is the agent-etcd that cfg names, or the one beside this process's executable.
func memberBinary(cfg *MemberConfig) (string, error) {
	if cfg.Binary != "" {
		return cfg.Binary, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find %s beside this executable: %w", etcdproc.BinaryName, err)
	}
	return filepath.Join(filepath.Dir(self), etcdproc.BinaryName), nil
}

// StartMember starts this node's etcd member (the agent-etcd beside this executable, or cfg.Binary) and waits until
// it serves clients, which for a member joining an existing cluster means a quorum of that cluster accepted it. It
// fails after cfg.ReadyTimeout or when ctx ends, and stops the process then (gracefully, as Close does).
func StartMember(ctx context.Context, cfg MemberConfig) (*Member, error) {
	pc, err := procConfig(&cfg)
	if err != nil {
		return nil, err
	}
	bin, err := memberBinary(&cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start etcd member %q: cluster mode runs its etcd member in %s, which must be installed beside agentd (`make build` builds it): %w",
			cfg.Name, etcdproc.BinaryName, err)
	}
	if err := os.MkdirAll(clusterDir(cfg.Root), 0o700); err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	conf, err := json.Marshal(pc)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), cfg.Env...)
	// Its own process group: a terminal's Ctrl-C meant for agentd must not stop the member before agentd does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start etcd member %q: %w", cfg.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start etcd member %q: run %s: %w", cfg.Name, bin, err)
	}
	m := &Member{cfg: cfg, cmd: cmd, stdin: stdin, replies: make(chan etcdproc.Message, 1),
		stopped: make(chan struct{}), exited: make(chan struct{}), failed: make(chan struct{})}
	first := make(chan etcdproc.Message, 1)
	m.supervise(stdout, stderr, first)
	cfg.Log.V(1).Info("Started the etcd member's process", "name", cfg.Name, "binary", bin, "pid", cmd.Process.Pid)
	if _, err := stdin.Write(append(conf, '\n')); err != nil {
		m.kill()
		return nil, fmt.Errorf("start etcd member %q: hand %s its configuration: %w%s", cfg.Name, bin, err, m.died())
	}

	timer := time.NewTimer(cfg.ReadyTimeout)
	defer timer.Stop()
	select {
	case msg := <-first:
		switch msg.Kind {
		case etcdproc.KindReady:
			id, perr := strconv.ParseUint(msg.ID, 16, 64)
			if perr != nil {
				m.Close()
				return nil, fmt.Errorf("etcd member %q: agent-etcd said its ID is %q: %w", cfg.Name, msg.ID, perr)
			}
			m.id, m.cluster = id, msg.Cluster
			cfg.Log.V(1).Info("Etcd member is ready", "name", cfg.Name, "id", msg.ID, "cluster", msg.Cluster,
				"clientURL", cfg.ClientURL, "pid", cmd.Process.Pid)
			go m.watch()
			return m, nil
		case etcdproc.KindFailed:
			m.wait(closeTimeout)
			return nil, fmt.Errorf("start etcd member %q (data %s, peer %s, client %s): %s", cfg.Name, pc.DataDir, cfg.PeerURL, cfg.ClientURL, msg.Error)
		default:
			m.kill()
			return nil, fmt.Errorf("etcd member %q: agent-etcd answered %q before it was ready", cfg.Name, msg.Kind)
		}
	case <-m.exited:
		select {
		case msg := <-first:
			if msg.Kind == etcdproc.KindFailed {
				return nil, fmt.Errorf("start etcd member %q (data %s, peer %s, client %s): %s", cfg.Name, pc.DataDir, cfg.PeerURL, cfg.ClientURL, msg.Error)
			}
		default:
		}
		return nil, fmt.Errorf("etcd member %q: %s exited while starting%s", cfg.Name, etcdproc.BinaryName, m.died())
	case <-timer.C:
		m.Close()
		return nil, fmt.Errorf("etcd member %q did not become ready within %s: it needs a quorum of the cluster's members (%s) to reach it at %s and each other",
			cfg.Name, cfg.ReadyTimeout, cfg.InitialCluster, cfg.PeerURL)
	case <-ctx.Done():
		m.Close()
		return nil, fmt.Errorf("etcd member %q: gave up waiting for it to become ready: %w", cfg.Name, ctx.Err())
	}
}

// supervise reads agent-etcd's messages and log, and reaps it when both end. The first message goes to first, the
// replies to m.replies.
func (m *Member) supervise(stdout, stderr io.Reader, first chan<- etcdproc.Message) {
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		gotFirst := false
		for sc.Scan() {
			var msg etcdproc.Message
			if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
				m.cfg.Log.Info("Ignoring a line of agent-etcd's that is not a message", "line", sc.Text())
				continue
			}
			switch {
			case !gotFirst:
				gotFirst = true
				first <- msg
			case msg.Kind == etcdproc.KindReply:
				select {
				case m.replies <- msg:
				default: // its caller gave up waiting
					m.cfg.Log.V(1).Info("Dropping a late answer of agent-etcd's", "op", msg.Op)
				}
			case msg.Kind == etcdproc.KindStopped:
				m.removedBy.Store(msg.Removed)
				m.markStopped()
			}
		}
		// The rest of the output is of no interest, but the pipe must be drained before Wait.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		defer readers.Done()
		m.forwardLog(stderr)
	}()
	go func() {
		readers.Wait()
		m.exitErr = m.cmd.Wait()
		close(m.exited)
		m.markStopped()
	}()
}

func (m *Member) markStopped() {
	select {
	case <-m.stopped:
	default:
		close(m.stopped)
	}
}

// watch reports a member that stops without Close: removed from the cluster, or dead.
func (m *Member) watch() {
	<-m.exited
	if m.closing.Load() {
		return
	}
	if m.removedBy.Load() {
		m.cfg.Log.Info("This node's etcd member stopped: it was removed from the cluster", "name", m.cfg.Name)
		return
	}
	m.cfg.Log.Error(errors.New(strings.TrimPrefix(m.died(), ": ")), "This node's etcd member stopped by itself",
		"name", m.cfg.Name, "pid", m.cmd.Process.Pid)
	close(m.failed)
}

// Failed is closed when the member stopped by itself without being removed from the cluster (agent-etcd died, or
// etcd stopped on an error); it was logged as an error. Its owner starts it again (Resume).
func (m *Member) Failed() <-chan struct{} { return m.failed }

// died describes how agent-etcd ended, with the last of its plain-text output, for an error message.
func (m *Member) died() string {
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		return ""
	}
	s := ": " + etcdproc.BinaryName + " exited"
	if m.exitErr != nil {
		s = ": " + etcdproc.BinaryName + ": " + m.exitErr.Error()
	}
	if out := m.output.String(); out != "" {
		s += "; its last output:\n" + out
	}
	return s
}

// forwardLog logs agent-etcd's log records through the member's logger, at their own level; other lines (a
// panic) are kept for the error message, and logged at V(1).
func (m *Member) forwardLog(r io.Reader) {
	h := logr.ToSlogHandler(m.cfg.Log)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		rec, ok := parseRecord(line)
		if !ok {
			m.output.add(sc.Text())
			m.cfg.Log.V(1).Info("agent-etcd output", "line", sc.Text())
			continue
		}
		if h.Enabled(context.Background(), rec.Level) {
			_ = h.Handle(context.Background(), rec)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// parseRecord reads one line of slog's JSON handler back into a record, keeping the attributes' order.
func parseRecord(line []byte) (slog.Record, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return slog.Record{}, false
	}
	var (
		when  time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
	)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return slog.Record{}, false
		}
		key, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return slog.Record{}, false
		}
		s, isString := v.(string)
		switch {
		case key == slog.TimeKey && isString:
			when, _ = time.Parse(time.RFC3339Nano, s)
		case key == slog.LevelKey && isString:
			if err := level.UnmarshalText([]byte(s)); err != nil {
				return slog.Record{}, false
			}
		case key == slog.MessageKey && isString:
			msg = s
		default:
			attrs = append(attrs, slog.Any(key, v))
		}
	}
	if when.IsZero() {
		when = time.Now()
	}
	r := slog.NewRecord(when, level, msg, 0)
	r.AddAttrs(attrs...)
	return r, true
}

// lowestLevel is the lowest slog level log prints (logr's V(4) is -4); above every level when it prints none.
func lowestLevel(log logr.Logger) int {
	h := logr.ToSlogHandler(log)
	for l := slog.Level(-8); l <= slog.LevelError; l++ {
		if h.Enabled(context.Background(), l) {
			return int(l)
		}
	}
	return int(slog.LevelError) + 1
}

// tail keeps the last lines of a process's plain-text output.
type tail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 30

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, s)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// errMemberStopped: the request could not be made, the member stopped.
var errMemberStopped = errors.New("etcd member stopped")

// call sends agent-etcd a request and waits for its answer.
func (m *Member) call(req etcdproc.Request) (etcdproc.Message, error) {
	m.callMu.Lock()
	defer m.callMu.Unlock()
	select {
	case <-m.stopped:
		return etcdproc.Message{}, errMemberStopped
	default:
	}
	b, err := json.Marshal(req)
	if err != nil {
		return etcdproc.Message{}, err
	}
	if _, err := m.stdin.Write(append(b, '\n')); err != nil {
		return etcdproc.Message{}, fmt.Errorf("etcd member %q: %s: %w", m.cfg.Name, req.Op, err)
	}
	timer := time.NewTimer(callTimeout)
	defer timer.Stop()
	select {
	case r := <-m.replies:
		if r.Op != req.Op {
			return r, fmt.Errorf("etcd member %q: asked %s, agent-etcd answered %s", m.cfg.Name, req.Op, r.Op)
		}
		if r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, nil
	case <-m.stopped:
		return etcdproc.Message{}, errMemberStopped
	case <-timer.C:
		return etcdproc.Message{}, fmt.Errorf("etcd member %q: no answer to %s within %s", m.cfg.Name, req.Op, callTimeout)
	}
}

// ID is the member's etcd ID.
func (m *Member) ID() uint64 { return m.id }

// Name is the member's name, the node's name.
func (m *Member) Name() string { return m.cfg.Name }

// ClientURL is where the member serves etcd clients.
func (m *Member) ClientURL() string { return m.cfg.ClientURL }

// PeerURL is where the member talks to the other members.
func (m *Member) PeerURL() string { return m.cfg.PeerURL }

// Pid is agent-etcd's process ID.
func (m *Member) Pid() int { return m.cmd.Process.Pid }

// removed reports whether the member stopped by itself, within wait or until ctx ends, which etcd does only when
// the member was removed from the cluster: when it applies its removal, or, often before that, when the other
// members, which applied it, refuse its connections (its own member list then still has it). A stop by Close does
// not count.
func (m *Member) removed(ctx context.Context, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-m.Done():
		return !m.closing.Load() || m.removedBy.Load()
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// IsLeader says whether the member is the cluster's raft leader right now.
func (m *Member) IsLeader() bool {
	r, err := m.call(etcdproc.Request{Op: etcdproc.OpStatus})
	return err == nil && r.Leader
}

// ClusterName is the etcd cluster ID in hex.
func (m *Member) ClusterName() string { return m.cluster }

// Done is closed when the member stopped: Close, removal from the cluster, or a fatal error (agent-etcd died).
func (m *Member) Done() <-chan struct{} { return m.stopped }

// quiesce ends the member's client streams and waits for the requests on them in progress: before the member is
// removed from the cluster (Leave: the leaving node still asks the cluster through it), which etcd carries out
// without asking. unary refuses unary requests too.
func (m *Member) quiesce(unary bool) {
	r, err := m.call(etcdproc.Request{Op: etcdproc.OpQuiesce, Unary: unary})
	if err == nil && !r.OK {
		m.cfg.Log.Info("Stopping the etcd member while a client request is still being served", "name", m.cfg.Name)
	}
}

// resume takes streams again after quiesce, when the member did not stop after all (its removal was refused).
func (m *Member) resume() {
	if _, err := m.call(etcdproc.Request{Op: etcdproc.OpResume}); err != nil {
		m.cfg.Log.Info("Could not have the etcd member serve streams again", "name", m.cfg.Name, "err", err)
	}
}

// transferLeadership hands leadership to another member if this one leads.
func (m *Member) transferLeadership() error {
	_, err := m.call(etcdproc.Request{Op: etcdproc.OpTransferLeadership})
	return err
}

// Close stops the member and waits until its process exited, so its ports and data dir are free. A leader first
// hands leadership to another member, so the others need not wait for an election; when that member does not answer
// (it is stopping too), etcd gives up after its request timeout, a little over 5 s. A member that does not stop
// within closeTimeout is killed.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		m.closing.Store(true)
		// End of input is agent-etcd's close request; it needs no answer.
		m.stdin.Close()
		m.wait(closeTimeout)
		m.cfg.Log.V(1).Info("Stopped etcd member", "name", m.cfg.Name)
	})
	return nil
}

// wait waits for agent-etcd to exit, and kills it after timeout.
func (m *Member) wait(timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-m.exited:
	case <-timer.C:
		m.cfg.Log.Info("The etcd member did not stop in time; killing it", "name", m.cfg.Name, "pid", m.cmd.Process.Pid, "timeout", timeout)
		m.kill()
	}
}

// kill ends agent-etcd at once and waits until it is reaped (tests: a crash; StartMember: a member that failed).
func (m *Member) kill() {
	m.closing.Store(true)
	_ = m.cmd.Process.Kill()
	m.stdin.Close()
	<-m.exited
}

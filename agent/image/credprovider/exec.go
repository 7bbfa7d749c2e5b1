package credprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	sigsjson "sigs.k8s.io/json"
)

// DefaultTimeout is kubelet's catch-all limit on one plugin run.
const DefaultTimeout = time.Minute

const (
	requestKind  = "CredentialProviderRequest"
	responseKind = "CredentialProviderResponse"

	// maxStdout bounds the response read; real ones are a few hundred bytes.
	maxStdout = 1 << 20
	// maxStderr bounds how much of the plugin's stderr an error repeats.
	maxStderr = 4 << 10
	// waitDelay is how long a killed plugin's pipes may stay open (held by a
	// child that left its process group) before agentd stops waiting for them.
	waitDelay = 5 * time.Second
)

var (
	// ErrPlugin is wrapped by errors of a plugin that could not be run, failed,
	// or timed out (then context.DeadlineExceeded is wrapped too).
	ErrPlugin = errors.New("credential provider plugin failed")
	// ErrBadResponse is wrapped by errors about what a plugin wrote on stdout.
	ErrBadResponse = errors.New("credential provider plugin returned an invalid response")
)

// execPlugin runs one provider's plugin, as kubelet does:
//
//	ENV=VALUE… <bin dir>/<name> args… <request.json >response.json
type execPlugin struct {
	name       string   // provider name, for errors
	path       string   // checked by pluginPath
	args       []string // from the config
	env        []string // the config's NAME=VALUE, added to the host's environment
	apiVersion string
	timeout    time.Duration
}

// run asks the plugin for image's credentials. It kills the plugin's whole
// process group when ctx ends or the timeout passes. Errors repeat the end of
// the plugin's stderr, as kubelet's do, but never its stdout.
func (e *execPlugin) run(ctx context.Context, image string) (*credentialproviderv1.CredentialProviderResponse, error) {
	req, err := json.Marshal(&credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: e.apiVersion, Kind: requestKind},
		Image:    image,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: provider %q: encoding the request: %w", ErrPlugin, e.name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	stdout := &cappedBuffer{max: maxStdout}
	stderr := &cappedBuffer{max: maxStderr, keepTail: true}
	cmd := exec.CommandContext(ctx, e.path, e.args...)
	cmd.Env = pluginEnv(e.env)
	cmd.Stdin = bytes.NewReader(req)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The plugin may be a script whose children hold stdout open.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay

	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: provider %q for image %q: no answer within %s: %w%s",
			ErrPlugin, e.name, image, e.timeout, ctx.Err(), stderr.suffix())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: provider %q for image %q: %w%s", ErrPlugin, e.name, image, err, stderr.suffix())
	}
	if stdout.overflow {
		return nil, fmt.Errorf("%w: provider %q for image %q: more than %d bytes on stdout", ErrBadResponse, e.name, image, maxStdout)
	}
	resp, err := decodeResponse(stdout.Bytes(), e.apiVersion)
	if err != nil {
		return nil, fmt.Errorf("provider %q for image %q: %w", e.name, image, err)
	}
	return resp, nil
}

// decodeResponse decodes a plugin's stdout strictly, as kubelet does, and
// checks its kind, apiVersion and cacheKeyType. The response holds passwords,
// so its errors name what is wrong and where, never the text.
func decodeResponse(data []byte, apiVersion string) (*credentialproviderv1.CredentialProviderResponse, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w: stdout is not JSON (error at byte %d of %d)", ErrBadResponse, se.Offset, len(data))
		}
		return nil, fmt.Errorf("%w: stdout is not a JSON object with string apiVersion and kind", ErrBadResponse)
	}
	if tm.APIVersion != apiVersion {
		return nil, fmt.Errorf("%w: apiVersion %q, want %q (the provider's apiVersion in the config)", ErrBadResponse, short(tm.APIVersion), apiVersion)
	}
	if tm.Kind != responseKind {
		return nil, fmt.Errorf("%w: kind %q, want %q", ErrBadResponse, short(tm.Kind), responseKind)
	}
	resp := &credentialproviderv1.CredentialProviderResponse{}
	strict, err := sigsjson.UnmarshalStrict(data, resp)
	if err != nil {
		// The decoder's message may quote a value.
		return nil, fmt.Errorf("%w: a field has the wrong type or format (its value is not shown: it may be a credential)", ErrBadResponse)
	}
	if len(strict) > 0 {
		msgs := make([]string, 0, len(strict))
		for _, se := range strict {
			// "unknown field \"auth[…].pasword\"": paths are keys, not values.
			msgs = append(msgs, se.Error())
		}
		return nil, fmt.Errorf("%w: %s", ErrBadResponse, strings.Join(msgs, "; "))
	}
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType, credentialproviderv1.RegistryPluginCacheKeyType,
		credentialproviderv1.GlobalPluginCacheKeyType:
	default:
		return nil, fmt.Errorf("%w: cacheKeyType %q, want Image, Registry or Global", ErrBadResponse, short(string(resp.CacheKeyType)))
	}
	return resp, nil
}

// short bounds a string a plugin chose before an error repeats it.
func short(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// cappedBuffer keeps at most max bytes of what is written to it: the first
// ones, or with keepTail the last ones. It never fails a write, so a chatty
// plugin is not killed by SIGPIPE.
type cappedBuffer struct {
	bytes.Buffer
	max      int
	keepTail bool
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.keepTail {
		b.Buffer.Write(p)
		if extra := b.Len() - b.max; extra > 0 {
			b.overflow = true
			b.Next(extra)
		}
		return n, nil
	}
	if room := b.max - b.Len(); len(p) > room {
		b.overflow = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return n, nil
}

// suffix is the captured stderr as the end of an error message, or "".
func (b *cappedBuffer) suffix() string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return ""
	}
	if b.overflow {
		s = "..." + s
	}
	return ": stderr: " + s
}

// pluginEnv is the environment a plugin runs with: the host's, then the
// provider's, so that the provider's win (kubelet appends them the same way).
func pluginEnv(vars []string) []string {
	return append(os.Environ(), vars...)
}

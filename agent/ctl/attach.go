package ctl

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
)

// newAttachCommand builds `attach`, kubectl attach's counterpart: the container's
// output from now on, and with -i its stdin (the container must have stdin: true).
func newAttachCommand(o *options) *cobra.Command {
	var ns, container string
	var stdin, tty, quiet bool
	cmd := &cobra.Command{
		Use:   "attach POD [-c CONTAINER] [-i] [-t] [-q]",
		Short: "Attach to a running container's stdio (kubectl attach)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := o.client()
			pod, err := c.Pod(cmd.Context(), ns, args[0])
			if err != nil {
				return notFound(err, args[0])
			}
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				return fmt.Errorf("cannot attach a container in a completed pod; current phase is %s", pod.Status.Phase)
			}
			name := container
			if name == "" {
				name = defaultContainer(pod, o.errOut)
			}
			spec := findContainer(pod, name)
			if spec == nil {
				return fmt.Errorf("cannot attach to the container: container %s not found in pod %s", name, pod.Name)
			}
			// kubectl's rules: a terminal only if the container has one, and then always.
			switch {
			case tty && !spec.TTY:
				tty = false
				if !quiet {
					fmt.Fprintf(o.errOut, "error: Unable to use a TTY - container %s did not allocate one\n", spec.Name)
				}
			case !tty && spec.TTY:
				tty = true
			}
			s := api.Streams{Stdout: o.out, Stderr: o.errOut}
			raw := false
			if stdin {
				s.Stdin = os.Stdin
				if tty {
					if term.IsTerminal(int(os.Stdin.Fd())) {
						raw = true
					} else if !quiet {
						fmt.Fprintln(o.errOut, "Unable to use a TTY - input is not a terminal or the right kind of file")
					}
				}
			}
			if raw {
				t, err := rawTerminal()
				if err != nil {
					return err
				}
				defer t.restore()
				s.Resize = t.resize
				// The terminal's size once more, so that a program redraws on re-attach.
				t.changed <- struct{}{} // buffered: taken by its goroutine
				s.Stderr = nil          // a terminal has no stderr of its own
			}
			if !quiet {
				fmt.Fprintln(o.errOut, "If you don't see a command prompt, try pressing enter.")
			}
			if err := c.Attach(cmd.Context(), ns, pod.Name, spec.Name, s); err != nil {
				return notFound(err, args[0])
			}
			if !quiet && stdin && raw && pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
				fmt.Fprintf(o.out, "Session ended, resume using 'agentctl attach %s -c %s -i -t' command when the pod is running\n", pod.Name, spec.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "the namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "", "the container (default: the kubectl.kubernetes.io/default-container annotation's, else the first)")
	cmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the container (it needs stdin: true)")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "stdin is a terminal")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print output from the remote session")
	o.addPodCompletion(cmd)
	return cmd
}

// findContainer is a pod's container (or init container) by name.
func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// terminal is the local terminal in raw mode, for exec -t and attach -t.
type terminal struct {
	fd            int
	old           *term.State
	width, height uint16
	resize        chan [2]uint16 // the terminal's new sizes (SIGWINCH)
	changed       chan struct{}  // asks for the size to be sent again
	stop          func()
}

// rawTerminal puts stdin's terminal in raw mode and reports its size and its changes.
func rawTerminal() (*terminal, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("stdin is not a terminal")
	}
	t := &terminal{fd: fd, resize: make(chan [2]uint16, 1), changed: make(chan struct{}, 1)}
	if w, h, err := term.GetSize(fd); err == nil {
		t.width, t.height = uint16(w), uint16(h)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	t.old = old
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	done := make(chan struct{})
	t.stop = func() { signal.Stop(winch); close(done) }
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
			case <-t.changed:
			}
			if w, h, err := term.GetSize(fd); err == nil {
				select {
				case t.resize <- [2]uint16{uint16(w), uint16(h)}:
				default:
				}
			}
		}
	}()
	return t, nil
}

func (t *terminal) restore() {
	t.stop()
	_ = term.Restore(t.fd, t.old)
}

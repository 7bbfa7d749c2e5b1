package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/ctl/printers"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func (o *options) client() *api.Client { return api.NewClient(o.socket) }

// namespaceFlags are kubectl's -n and -A.
type namespaceFlags struct {
	namespace string
	all       bool
}

func (n *namespaceFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&n.namespace, "namespace", "n", "default", "the namespace")
	cmd.Flags().BoolVarP(&n.all, "all-namespaces", "A", false, "list pods of every namespace")
}

func (n *namespaceFlags) filter(pods []corev1.Pod) []corev1.Pod {
	if n.all {
		return pods
	}
	var out []corev1.Pod
	for _, p := range pods {
		if p.Namespace == n.namespace {
			out = append(out, p)
		}
	}
	return out
}

// addGetPods adds `get pods`.
func addGetPods(o *options, get *cobra.Command) {
	var ns namespaceFlags
	var output string
	var watch, noHeaders bool
	var selector, sortBy string
	pods := &cobra.Command{
		Use:     "pods [NAME]",
		Aliases: []string{"pod", "po"},
		Short:   "List pods (kubectl get pods)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := printers.CheckFormat(output); err != nil {
				return err
			}
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("unable to parse requirement: %w", err)
			}
			c := o.client()
			ctx := cmd.Context()
			if len(args) == 1 && (output == "json" || output == "yaml" || printers.IsTemplateFormat(output)) && !watch {
				p, err := c.Pod(ctx, ns.namespace, args[0])
				if err != nil {
					return notFound(err, args[0])
				}
				return printers.PrintPod(o.out, p, output)
			}
			list, err := c.Pods(ctx)
			if err != nil {
				return err
			}
			list = ns.filter(list)
			list = slices.DeleteFunc(list, func(p corev1.Pod) bool { return !sel.Matches(labels.Set(p.Labels)) })
			if len(args) == 1 {
				list = byName(list, args[0])
				if len(list) == 0 {
					return fmt.Errorf("pods %q not found", args[0])
				}
			}
			if len(list) == 0 && output == "" && !watch {
				if ns.all {
					fmt.Fprintln(o.errOut, "No resources found")
				} else {
					fmt.Fprintf(o.errOut, "No resources found in %s namespace.\n", ns.namespace)
				}
				return nil
			}
			// Watching, kubectl gives a template each object rather than the List.
			perObject := watch && printers.IsTemplateFormat(output)
			// A watch's rows line up under the header: one table writer for them all.
			table := tableWriter(o.out, output, watch)
			if perObject {
				for i := range list {
					if err := printers.PrintPod(o.out, &list[i], output); err != nil {
						return err
					}
				}
			} else if err := printers.PrintPodsSorted(table, list, output, ns.all, noHeaders, sortBy, time.Now()); err != nil {
				return err
			}
			if !watch {
				return nil
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
			defer stop()
			first := true
			return c.Watch(ctx, func(ev api.WatchEvent) error {
				if ev.Type == api.Added && first {
					return nil // already printed
				}
				p := ev.Object
				if !ns.all && p.Namespace != ns.namespace || len(args) == 1 && p.Name != args[0] || !sel.Matches(labels.Set(p.Labels)) {
					return nil
				}
				first = false
				if perObject {
					return printers.PrintPod(o.out, &p, output)
				}
				return printers.PrintPods(table, []corev1.Pod{p}, output, ns.all, true, time.Now())
			})
		},
	}
	ns.add(pods)
	pods.Flags().StringVarP(&output, "output", "o", "", outputFlagHelp)
	pods.Flags().BoolVarP(&watch, "watch", "w", false, "after listing, watch for changes")
	pods.Flags().BoolVar(&noHeaders, "no-headers", false, "do not print headers")
	pods.Flags().StringVarP(&selector, "selector", "l", "", "label selector, as kubectl's (-l app=web,tier!=db, 'env in (a,b)')")
	pods.Flags().StringVar(&sortBy, "sort-by", "", "sort by a jsonpath expression, as kubectl's (--sort-by=.status.startTime)")
	o.addPodCompletion(pods)
	get.AddCommand(pods)
}

// addGetEvents adds `get events`.
func addGetEvents(o *options, get *cobra.Command) {
	var evNS namespaceFlags
	var evOut, evSortBy string
	var evWatch, evNoHeaders bool
	events := &cobra.Command{
		Use:     "events [NAME]",
		Aliases: []string{"event", "ev"},
		Short:   "List events (kubectl get events)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := printers.CheckFormat(evOut); err != nil {
				return err
			}
			c := o.client()
			list := func(ctx context.Context) ([]corev1.Event, error) {
				evs, err := c.Events(ctx, "")
				if err != nil || evNS.all {
					return evs, err
				}
				var keep []corev1.Event
				for _, e := range evs {
					// Node-wide events (invalid manifests) show in every namespace.
					if e.InvolvedObject.Namespace == evNS.namespace || e.InvolvedObject.Kind == "Node" {
						keep = append(keep, e)
					}
				}
				return keep, nil
			}
			if len(args) == 1 {
				all := list
				list = func(ctx context.Context) ([]corev1.Event, error) {
					evs, err := all(ctx)
					return slices.DeleteFunc(evs, func(e corev1.Event) bool { return e.Name != args[0] }), err
				}
			}
			evs, err := list(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 && len(evs) == 0 {
				return fmt.Errorf("events %q not found", args[0])
			}
			if len(args) == 1 && !evWatch { // kubectl: one name, one object, not a List
				return printers.PrintEvent(o.out, &evs[0], evOut, evNoHeaders, time.Now())
			}
			if len(evs) == 0 && (evOut == "" || evOut == "wide") && !evWatch {
				if evNS.all {
					fmt.Fprintln(o.errOut, "No resources found")
				} else {
					fmt.Fprintf(o.errOut, "No resources found in %s namespace.\n", evNS.namespace)
				}
				return nil
			}
			table := tableWriter(o.out, evOut, evWatch)
			if evWatch && printers.IsTemplateFormat(evOut) {
				for i := range evs {
					if err := printers.PrintEventsSorted(o.out, evs[i:i+1], evOut, true, "", time.Now()); err != nil {
						return err
					}
				}
			} else if err := printers.PrintEventsSorted(table, evs, evOut, evNoHeaders, evSortBy, time.Now()); err != nil {
				return err
			}
			if !evWatch {
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			return watchEvents(ctx, evs, list, func(e corev1.Event) error {
				return printers.PrintEventsSorted(table, []corev1.Event{e}, evOut, true, "", time.Now())
			})
		},
	}
	evNS.add(events)
	events.Flags().StringVarP(&evOut, "output", "o", "", outputFlagHelp)
	events.Flags().BoolVarP(&evWatch, "watch", "w", false, "after listing, print events as they are recorded or repeated")
	events.Flags().BoolVar(&evNoHeaders, "no-headers", false, "do not print headers")
	events.Flags().StringVar(&evSortBy, "sort-by", "", "sort by a jsonpath expression, as kubectl's (--sort-by=.lastTimestamp)")
	get.AddCommand(events)
}

// newDescribeCommand builds `describe pod|node|daemonset`.
func newDescribeCommand(o *options) *cobra.Command {
	var descNS string
	describe := &cobra.Command{Use: "describe", Short: "Show details of a resource"}
	describePod := &cobra.Command{
		Use:     "pod NAME",
		Aliases: []string{"pods", "po"},
		Short:   "Describe a pod (kubectl describe pod)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := o.client()
			p, err := c.Pod(cmd.Context(), descNS, args[0])
			if err != nil {
				return notFound(err, args[0])
			}
			evs, err := c.Events(cmd.Context(), p.UID)
			if err != nil {
				return err
			}
			return printers.DescribePod(o.out, p, evs, time.Now())
		},
	}
	describePod.Flags().StringVarP(&descNS, "namespace", "n", "default", "the namespace")
	o.addPodCompletion(describePod)
	describe.AddCommand(describePod)
	addClusterDescribe(o, describe)
	return describe
}

func newLogsCommand(o *options) *cobra.Command {
	var logOpts api.LogOptions
	var logNS, sinceTime string
	var since time.Duration
	var allContainers, prefix bool
	logs := &cobra.Command{
		Use:   "logs POD",
		Short: "Print a container's logs (kubectl logs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := logOpts
			switch {
			case allContainers && opts.Container != "":
				return fmt.Errorf("--all-containers=true should not be specified with container name %s", opts.Container)
			case since != 0 && sinceTime != "":
				return errors.New("at most one of `sinceTime` or `sinceSeconds` may be specified")
			case since < 0:
				return errors.New("--since must be greater than 0")
			case cmd.Flags().Changed("limit-bytes") && opts.LimitBytes < 1:
				return errors.New("--limit-bytes must be greater than 0")
			}
			if since > 0 {
				opts.SinceSeconds = max(int64(since.Round(time.Second).Seconds()), 1)
			}
			if sinceTime != "" {
				t, err := time.Parse(time.RFC3339, sinceTime)
				if err != nil {
					return fmt.Errorf("--since-time: %w", err)
				}
				opts.SinceTime = t
			}
			ctx := cmd.Context()
			if opts.Follow {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
				defer stop()
			}
			c := o.client()
			var containers []string
			switch {
			case allContainers:
				p, err := c.Pod(ctx, logNS, args[0])
				if err != nil {
					return notFound(err, args[0])
				}
				containers = allContainerNames(p)
			case opts.Container == "":
				name, err := o.containerFor(ctx, c, logNS, args[0])
				if err != nil {
					return err
				}
				containers = []string{name}
			default:
				containers = []string{opts.Container}
			}
			return o.logs(ctx, c, logNS, args[0], containers, opts, prefix)
		},
	}
	logs.Flags().StringVarP(&logNS, "namespace", "n", "default", "the namespace")
	logs.Flags().StringVarP(&logOpts.Container, "container", "c", "", "the container (default: the kubectl.kubernetes.io/default-container annotation's, else the first)")
	logs.Flags().BoolVarP(&logOpts.Follow, "follow", "f", false, "keep printing new lines")
	logs.Flags().BoolVarP(&logOpts.Previous, "previous", "p", false, "the previous run of the container")
	logs.Flags().BoolVar(&logOpts.Timestamps, "timestamps", false, "prefix each line with its timestamp")
	logs.Flags().Int64Var(&logOpts.TailLines, "tail", -1, "only the last N lines (with -f: then follow)")
	logs.Flags().DurationVar(&since, "since", 0, "only lines newer than this (5s, 2m, 3h)")
	logs.Flags().StringVar(&sinceTime, "since-time", "", "only lines since this RFC3339 time")
	logs.Flags().Int64Var(&logOpts.LimitBytes, "limit-bytes", 0, "stop after this many bytes (per container)")
	logs.Flags().BoolVar(&allContainers, "all-containers", false, "the logs of every container of the pod (init, then app, then ephemeral)")
	logs.Flags().BoolVar(&prefix, "prefix", false, "prefix each line with [pod/NAME/CONTAINER]")
	o.addPodCompletion(logs)
	return logs
}

func newExecCommand(o *options) *cobra.Command {
	var execNS, execContainer string
	var stdin, tty bool
	execCmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a container (kubectl exec)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("exec needs POD -- COMMAND: put -- before the command")
			}
			req := &protocol.ExecRequest{Args: args[1:], Tty: tty}
			s := api.Streams{Stdout: o.out, Stderr: o.errOut}
			if stdin {
				s.Stdin = os.Stdin
			}
			if tty {
				if !term.IsTerminal(int(os.Stdin.Fd())) {
					return errors.New("-t needs a terminal on stdin; drop -t")
				}
				raw, err := rawTerminal()
				if err != nil {
					return err
				}
				defer raw.restore()
				req.Width, req.Height = raw.width, raw.height
				s.Resize = raw.resize
			}
			c := o.client()
			container := execContainer
			if container == "" {
				name, err := o.containerFor(cmd.Context(), c, execNS, args[0])
				if err != nil {
					return err
				}
				container = name
			}
			code, err := c.Exec(cmd.Context(), execNS, args[0], container, req, s)
			if err != nil {
				return notFound(err, args[0])
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	execCmd.Flags().StringVarP(&execNS, "namespace", "n", "default", "the namespace")
	execCmd.Flags().StringVarP(&execContainer, "container", "c", "", "the container (default: the kubectl.kubernetes.io/default-container annotation's, else the first)")
	execCmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	execCmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	o.addPodCompletion(execCmd)
	return execCmd
}

// newDeleteCommand builds `delete pod|daemonset|node`.
func newDeleteCommand(o *options) *cobra.Command {
	var delNS string
	var unmanaged bool
	del := &cobra.Command{Use: "delete", Short: "Delete resources"}
	delPod := &cobra.Command{
		Use:     "pod NAME",
		Aliases: []string{"pods", "po"},
		Short:   "Stop a pod left by an incompatible older agentd (--unmanaged)",
		Long: "agentd runs static pods: remove a pod's manifest file to delete it. A pod shown as Unmanaged " +
			"(its monitors speak an older, incompatible protocol) is stopped with --unmanaged; agentd then runs " +
			"it anew from its manifest.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !unmanaged {
				return errors.New("agentd runs static pods: delete a pod by removing its manifest file (only --unmanaged pods are deleted here)")
			}
			if err := o.client().DeleteUnmanaged(cmd.Context(), delNS, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "pod %q deleted\n", args[0])
			return nil
		},
	}
	delPod.Flags().StringVarP(&delNS, "namespace", "n", "default", "the namespace")
	delPod.Flags().BoolVar(&unmanaged, "unmanaged", false, "stop an Unmanaged pod (monitors of an incompatible version)")
	o.addPodCompletion(delPod)
	del.AddCommand(delPod)
	addClusterDelete(o, del)
	return del
}

func newInfoCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show agentd's configuration and state (docker info)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := o.client().Info(cmd.Context())
			if err != nil {
				return err
			}
			return printers.PrintInfo(o.out, info)
		},
	}
}

// containerFor is the container logs and exec use for a pod when -c is not given, as
// kubectl chooses it (defaultContainer), saying on stderr when it picked the first of
// several.
func (o *options) containerFor(ctx context.Context, c *api.Client, namespace, pod string) (string, error) {
	p, err := c.Pod(ctx, namespace, pod)
	if err != nil {
		return "", notFound(err, pod)
	}
	return defaultContainer(p, o.errOut), nil
}

// eventsPollInterval is how often `get events -w` asks agentd for its events: agentd
// has no watch of events, and they are few.
var eventsPollInterval = time.Second

// watchEvents calls print for every event list returns that is not in seen, or has
// changed (repeated: a new count or last time) since, until ctx is done.
func watchEvents(ctx context.Context, seen []corev1.Event, list func(context.Context) ([]corev1.Event, error), print func(corev1.Event) error) error {
	key := func(e *corev1.Event) string {
		return fmt.Sprintf("%s/%s/%s", e.Namespace, e.Name, e.UID)
	}
	version := func(e *corev1.Event) string {
		v := fmt.Sprintf("%d %s %s", e.Count, e.LastTimestamp.UTC(), e.ResourceVersion)
		if e.Series != nil {
			v += fmt.Sprintf(" %d %s", e.Series.Count, e.Series.LastObservedTime.UTC())
		}
		return v
	}
	known := make(map[string]string, len(seen))
	for i := range seen {
		known[key(&seen[i])] = version(&seen[i])
	}
	t := time.NewTicker(eventsPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		evs, err := list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range evs {
			k, v := key(&evs[i]), version(&evs[i])
			if known[k] == v {
				continue
			}
			known[k] = v
			if err := print(evs[i]); err != nil {
				return err
			}
		}
	}
}

// outputFlagHelp describes -o of the get commands.
const outputFlagHelp = "output format: wide, json, yaml, name, jsonpath=TEMPLATE, go-template=TEMPLATE, custom-columns=SPEC (and jsonpath-file, go-template-file, custom-columns-file =FILE)"

// exitCode is an error that makes agentctl exit with a command's code, as kubectl exec does.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("command terminated with exit code %d", int(e)) }

// tableWriter is where a get prints: for a watch in a table format, one table
// writer (printers.TableWriter) for the listing and every later row, so that the
// rows keep the header's column widths as kubectl's do; else out itself.
func tableWriter(out io.Writer, format string, watch bool) io.Writer {
	if watch && (format == printers.FormatTable || format == printers.FormatWide) {
		return printers.NewTableWriter(out)
	}
	return out
}

func notFound(err error, name string) error {
	if errors.Is(err, api.ErrNotFound) {
		return fmt.Errorf("pods %q not found", name)
	}
	return err
}

func byName(pods []corev1.Pod, name string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

func printServerVersion(o *options, cmd *cobra.Command) {
	v, err := o.client().Version(cmd.Context())
	w := tabwriter.NewWriter(o.out, 0, 8, 1, ' ', 0)
	if err != nil {
		fmt.Fprintf(o.errOut, "Server Version: unavailable (%v)\n", err)
		return
	}
	fmt.Fprintf(w, "Server Version: %s\nMonitor Protocol: %s\n", v.Version, v.MonitorProtocol)
	w.Flush()
}

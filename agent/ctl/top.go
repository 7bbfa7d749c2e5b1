package ctl

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// newTopCommand is kubectl top for pods: agentd reads each running container's
// cgroup (CPU time and memory working set, the figures of kubelet's
// /metrics/resource) and answers metrics-server's PodMetrics. CPU is a rate
// over the window between two readings at least a second apart: the previous
// `top` or scrape of /metrics/resource if there was one in the last two
// minutes, else agentd reads again after a second, so the first `top` takes
// about one.
func newTopCommand(o *options) *cobra.Command {
	top := &cobra.Command{Use: "top", Short: "Display resource (CPU/memory) usage of pods"}
	var ns namespaceFlags
	var containers, noHeaders bool
	var sortBy string
	pod := &cobra.Command{
		Use:     "pod [NAME]",
		Aliases: []string{"pods", "po"},
		Short:   "Display CPU (cores) and memory (working set) usage of running pods",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			namespace, name := ns.namespace, ""
			if ns.all {
				namespace = ""
			}
			if len(args) == 1 {
				if ns.all {
					return fmt.Errorf("a pod name cannot be given with --all-namespaces")
				}
				name = args[0]
			}
			if sortBy != "" && sortBy != "cpu" && sortBy != "memory" {
				return fmt.Errorf("--sort-by accepts only cpu or memory")
			}
			items, err := o.client().PodMetrics(cmd.Context(), namespace, name)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				if ns.all {
					fmt.Fprintln(o.errOut, "No resources found")
				} else {
					fmt.Fprintf(o.errOut, "No resources found in %s namespace.\n", ns.namespace)
				}
				return nil
			}
			return printPodMetrics(o.out, items, topOptions{allNamespaces: ns.all, containers: containers, noHeaders: noHeaders, sortBy: sortBy})
		},
	}
	ns.add(pod)
	pod.Flags().BoolVar(&containers, "containers", false, "print the usage of each container of the pods")
	pod.Flags().BoolVar(&noHeaders, "no-headers", false, "print no header line")
	pod.Flags().StringVar(&sortBy, "sort-by", "", "sort by cpu or memory, the largest first")
	top.AddCommand(pod)
	return top
}

type topOptions struct {
	allNamespaces, containers, noHeaders bool
	sortBy                               string
}

// podUsage sums a pod's containers, as kubectl top pod does.
func podUsage(pm *metricsv1beta1.PodMetrics) (cpu, mem resource.Quantity) {
	for _, c := range pm.Containers {
		cpu.Add(c.Usage[corev1.ResourceCPU])
		mem.Add(c.Usage[corev1.ResourceMemory])
	}
	return cpu, mem
}

// formatCPU and formatMemory are kubectl top's units: millicores and mebibytes.
func formatCPU(q resource.Quantity) string    { return fmt.Sprintf("%vm", q.MilliValue()) }
func formatMemory(q resource.Quantity) string { return fmt.Sprintf("%vMi", q.Value()/(1024*1024)) }

// printPodMetrics prints kubectl top pod's table: NAME CPU(cores) MEMORY(bytes),
// NAMESPACE first with -A, a row per container (POD NAME …) with --containers.
func printPodMetrics(out io.Writer, items []metricsv1beta1.PodMetrics, o topOptions) error {
	items = append([]metricsv1beta1.PodMetrics(nil), items...)
	if o.sortBy != "" {
		sort.SliceStable(items, func(i, j int) bool {
			ci, mi := podUsage(&items[i])
			cj, mj := podUsage(&items[j])
			if o.sortBy == "cpu" {
				return ci.Cmp(cj) > 0
			}
			return mi.Cmp(mj) > 0
		})
	}
	w := tabwriter.NewWriter(out, 10, 4, 3, ' ', 0)
	var header []string
	if o.allNamespaces {
		header = append(header, "NAMESPACE")
	}
	if o.containers {
		header = append(header, "POD")
	}
	header = append(header, "NAME", "CPU(cores)", "MEMORY(bytes)")
	if !o.noHeaders {
		printRow(w, header)
	}
	for i := range items {
		pm := &items[i]
		var prefix []string
		if o.allNamespaces {
			prefix = append(prefix, pm.Namespace)
		}
		if !o.containers {
			cpu, mem := podUsage(pm)
			printRow(w, append(prefix, pm.Name, formatCPU(cpu), formatMemory(mem)))
			continue
		}
		for _, c := range pm.Containers {
			printRow(w, append(append(prefix[:len(prefix):len(prefix)], pm.Name), c.Name, formatCPU(c.Usage[corev1.ResourceCPU]), formatMemory(c.Usage[corev1.ResourceMemory])))
		}
	}
	return w.Flush()
}

func printRow(w io.Writer, cols []string) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}

package ctl

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// Shell completion from the running agent: pod names (of the -n namespace, or all with
// -A) for the commands that take a pod, container names of the pod for -c, namespaces
// for -n. Nothing is offered when agentd does not answer.

// completePods completes the first argument with pod names.
func (o *options) completePods(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	pods, err := o.client().Pods(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ns, all := completionNamespace(cmd)
	var names []cobra.Completion
	for _, p := range pods {
		if (all || p.Namespace == ns) && strings.HasPrefix(p.Name, toComplete) && !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeContainers completes -c with the containers of the pod named first.
func (o *options) completeContainers(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ns, _ := completionNamespace(cmd)
	p, err := o.client().Pod(cmd.Context(), ns, args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, n := range allContainerNames(p) {
		if strings.HasPrefix(n, toComplete) {
			names = append(names, n)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeNamespaces completes -n with the namespaces that have pods.
func (o *options) completeNamespaces(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	pods, err := o.client().Pods(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, p := range pods {
		if strings.HasPrefix(p.Namespace, toComplete) && !slices.Contains(names, p.Namespace) {
			names = append(names, p.Namespace)
		}
	}
	slices.Sort(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

func completionNamespace(cmd *cobra.Command) (string, bool) {
	ns := "default"
	if f := cmd.Flags().Lookup("namespace"); f != nil {
		ns = f.Value.String()
	}
	all := false
	if f := cmd.Flags().Lookup("all-namespaces"); f != nil {
		all = f.Value.String() == "true"
	}
	return ns, all
}

// addPodCompletion makes cmd complete its first argument with pods, and its -c and -n
// flags, where it has them, with containers and namespaces.
func (o *options) addPodCompletion(cmd *cobra.Command) {
	cmd.ValidArgsFunction = o.completePods
	if cmd.Flags().Lookup("container") != nil {
		_ = cmd.RegisterFlagCompletionFunc("container", o.completeContainers)
	}
	if cmd.Flags().Lookup("namespace") != nil {
		_ = cmd.RegisterFlagCompletionFunc("namespace", o.completeNamespaces)
	}
}

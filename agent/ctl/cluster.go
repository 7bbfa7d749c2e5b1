package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/ctl/printers"
)

// newClusterCommand builds `cluster init|join|leave|status|token|certs`.
func newClusterCommand(o *options) *cobra.Command {
	cl := &cobra.Command{Use: "cluster", Short: "Cluster mode: init, join, leave, status, token, certs"}
	var initReq api.ClusterInitRequest
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Start a new cluster with this node as its first etcd member (live restore turns off)",
		Long: "Creates the cluster's CA, this node's certificates and the cluster admin credential (<root>/cluster/admin.conf, " +
			"like kubeadm's admin.conf: who holds it may apply DaemonSets, create join tokens and remove nodes), starts an " +
			"embedded etcd member that speaks only mutual TLS with access control on, and puts this node into cluster mode: it " +
			"runs the cluster's DaemonSets, and live restore is off while it is in the cluster. This node also serves the " +
			"join service other nodes join through. Everything listens on loopback unless --peer-url, --client-url and " +
			"--join-url give addresses other hosts can reach.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.client().ClusterInit(cmd.Context(), initReq)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.out, "Cluster %s initialized; node %q is its first member (Pod Security: %s).\n", st.ClusterID, st.NodeName, st.PodSecurity)
			fmt.Fprintf(o.out, "Other nodes join it with the command `agentctl cluster token create` prints here.\n")
			return nil
		},
	}
	initCmd.Flags().StringVar(&initReq.PeerURL, "peer-url", "", "URL the etcd member talks to the other members on (default https://127.0.0.1:2380)")
	initCmd.Flags().StringVar(&initReq.ClientURL, "client-url", "", "URL the etcd member serves clients on (default https://127.0.0.1:2379)")
	initCmd.Flags().StringVar(&initReq.JoinURL, "join-url", "", "URL of the join service other nodes join through (default the client URL's host, port 2377)")
	initCmd.Flags().StringVar(&initReq.PodSecurity, "pod-security", "baseline", "Pod Security Standards level DaemonSet pods must meet: privileged, baseline or restricted")
	initCmd.Flags().StringVar(&initReq.CertValidity, "cert-validity", "", "how long node certificates are valid; they renew at 70-90% of it (default 8760h)")

	var joinReq api.ClusterJoinRequest
	joinCmd := &cobra.Command{
		Use:   "join URL --token TOKEN --ca-cert-hash sha256:HASH",
		Short: "Join the cluster whose join service is at URL, with a bootstrap token",
		Long: "Checks that the join service's CA has the SPKI hash --ca-cert-hash before it sends the token, gets this " +
			"node's certificates, and joins as a worker: a client of the members' etcd whose credentials read the " +
			"cluster's state and write only this node's records. With --control-plane (and a token made for it) it " +
			"joins as an etcd member instead. `agentctl cluster token create` prints the whole command. " +
			"When agentd has cluster.etcd-endpoints configured, it joins that external etcd as a client instead, with the " +
			"certificates cluster.etcd-*-file name (no URL or token then).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				joinReq.URL = args[0]
			}
			st, err := o.client().ClusterJoin(cmd.Context(), joinReq)
			if err != nil {
				return err
			}
			how := "as an etcd member"
			if !st.EtcdMember {
				how = "as a client of its etcd"
			}
			fmt.Fprintf(o.out, "Node %q joined cluster %s %s.\n", st.NodeName, st.ClusterID, how)
			return nil
		},
	}
	joinCmd.Flags().StringVar(&joinReq.Token, "token", "", "bootstrap token (abcdef.0123456789abcdef) from `agentctl cluster token create`")
	joinCmd.Flags().StringVar(&joinReq.CACertHash, "ca-cert-hash", "", "sha256:<hex> of the cluster CA's public key; the join stops before sending the token when it does not match")
	joinCmd.Flags().StringVar(&joinReq.PeerURL, "peer-url", "", "URL this node's etcd member talks to the other members on (default https://127.0.0.1:2380)")
	joinCmd.Flags().StringVar(&joinReq.ClientURL, "client-url", "", "URL this node's etcd member serves clients on (default https://127.0.0.1:2379)")
	joinCmd.Flags().BoolVar(&joinReq.ControlPlane, "control-plane", false, "join as a control-plane node: run an etcd member here (three tolerate the loss of one); needs a token made with --control-plane. A member holds all of the cluster's data and can write anything in it")

	token := &cobra.Command{Use: "token", Short: "Bootstrap tokens for `agentctl cluster join`"}
	var tokReq api.TokenRequest
	tokCreate := &cobra.Command{
		Use:   "create",
		Short: "Create a bootstrap token and print the join command that uses it",
		Long: "Runs on the node that serves the join service (the one that ran `cluster init`). The token's secret is " +
			"shown only here; the cluster keeps a hash of it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := o.client().CreateToken(cmd.Context(), tokReq)
			if err != nil {
				return err
			}
			fmt.Fprintln(o.out, tok.JoinCommand)
			return nil
		},
	}
	tokCreate.Flags().StringVar(&tokReq.TTL, "ttl", "24h", "how long the token may be used; 0 never expires")
	tokCreate.Flags().BoolVar(&tokReq.Once, "once", false, "the token joins one node only")
	tokCreate.Flags().StringVar(&tokReq.Description, "description", "", "what the token is for")
	tokCreate.Flags().BoolVar(&tokReq.ControlPlane, "control-plane", false, "the token may join control-plane nodes (etcd members, which hold all the cluster's data and can write anything in it); without it, workers only")
	tokList := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the cluster's bootstrap tokens (their secrets are never shown again)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := o.client().Tokens(cmd.Context())
			if err != nil {
				return err
			}
			return printers.PrintTokens(o.out, list, time.Now())
		},
	}
	tokDelete := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm", "revoke"},
		Short:   "Revoke a bootstrap token",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _, _ := strings.Cut(args[0], ".")
			if err := o.client().DeleteToken(cmd.Context(), id); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					return fmt.Errorf("bootstrap token %q not found", id)
				}
				return err
			}
			fmt.Fprintf(o.out, "bootstrap token %q deleted\n", id)
			return nil
		},
	}
	token.AddCommand(tokCreate, tokList, tokDelete)

	certs := &cobra.Command{
		Use:   "certs",
		Short: "Show this node's cluster certificates, when they expire and when they renew",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := o.client().Certs(cmd.Context())
			if err != nil {
				return err
			}
			return printers.PrintCerts(o.out, list, time.Now())
		},
	}

	var force bool
	leaveCmd := &cobra.Command{
		Use:   "leave",
		Short: "Leave the cluster: its pods stop here, and a configured live restore is on again",
		Long: "Removes this node and its etcd member from the cluster. The cluster must accept it: reachable, and " +
			"keeping a quorum of running members. --force leaves anyway when it does not: the local member and " +
			"membership are removed, and the cluster, if it lives on, still lists this node until " +
			"`agentctl delete node NAME` is run on another node.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.client().ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			if err := o.client().ClusterLeave(cmd.Context(), force); err != nil {
				return err
			}
			fmt.Fprintf(o.out, "Node %q left cluster %s.\n", st.NodeName, st.ClusterID)
			return nil
		},
	}
	leaveCmd.Flags().BoolVar(&force, "force", false, "leave even when the cluster cannot be reached or would lose its quorum")
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node's cluster membership",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.client().ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			return printers.PrintClusterStatus(o.out, st)
		},
	}
	cl.AddCommand(initCmd, joinCmd, leaveCmd, statusCmd, token, certs)
	return cl
}

// newApplyCommand builds `apply -f`.
func newApplyCommand(o *options) *cobra.Command {
	var file string
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update DaemonSets in the cluster from a manifest (- for stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("must specify -f FILE (the manifest of an apps/v1 DaemonSet; - reads stdin)")
			}
			data, err := readManifest(file)
			if err != nil {
				return err
			}
			docs, err := splitDocuments(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c := o.client()
			for _, doc := range docs {
				res, err := c.ApplyDaemonSet(cmd.Context(), doc)
				if err != nil {
					return fmt.Errorf("%s: %s", file, api.CleanMessage(err))
				}
				fmt.Fprintf(o.out, "daemonset.apps/%s %s\n", res.DaemonSet.Name, res.Result)
			}
			return nil
		},
	}
	apply.Flags().StringVarP(&file, "filename", "f", "", "manifest file (YAML or JSON; several documents separated by ---)")
	return apply
}

// addClusterGet adds `get nodes` and `get daemonsets`.
func addClusterGet(o *options, get *cobra.Command) {
	var nodesOut string
	var nodesNoHeaders bool
	nodes := &cobra.Command{
		Use:     "nodes [NAME]",
		Aliases: []string{"node", "no"},
		Short:   "List the cluster's nodes (kubectl get nodes)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := o.client().Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 { // kubectl: one name, one object, not a List
				i := slices.IndexFunc(list, func(n corev1.Node) bool { return n.Name == args[0] })
				if i < 0 {
					return fmt.Errorf("nodes %q not found", args[0])
				}
				return printers.PrintNode(o.out, &list[i], nodesOut, nodesNoHeaders, time.Now())
			}
			if len(list) == 0 && nodesOut == "" {
				fmt.Fprintln(o.errOut, "No resources found")
				return nil
			}
			return printers.PrintNodes(o.out, list, nodesOut, nodesNoHeaders, time.Now())
		},
	}
	nodes.Flags().StringVarP(&nodesOut, "output", "o", "", outputFlagHelp)
	nodes.Flags().BoolVar(&nodesNoHeaders, "no-headers", false, "do not print headers")

	var dsOut string
	var dsNS namespaceFlags
	dss := &cobra.Command{
		Use:     "daemonsets [NAME]",
		Aliases: []string{"daemonset", "ds"},
		Short:   "List the cluster's DaemonSets (kubectl get daemonsets)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := o.client().DaemonSets(cmd.Context())
			if err != nil {
				return err
			}
			out := list[:0]
			for _, ds := range list {
				if (dsNS.all || ds.Namespace == dsNS.namespace) && (len(args) == 0 || ds.Name == args[0]) {
					out = append(out, ds)
				}
			}
			if len(out) == 0 {
				if len(args) == 1 {
					return fmt.Errorf("daemonsets.apps %q not found", args[0])
				}
				if dsOut == "" {
					if dsNS.all {
						fmt.Fprintln(o.errOut, "No resources found")
					} else {
						fmt.Fprintf(o.errOut, "No resources found in %s namespace.\n", dsNS.namespace)
					}
					return nil
				}
			}
			if len(args) == 1 { // kubectl: one name, one object, not a List
				return printers.PrintDaemonSet(o.out, &out[0], dsOut, time.Now())
			}
			return printers.PrintDaemonSets(o.out, out, dsOut, time.Now())
		},
	}
	dsNS.add(dss)
	dss.Flags().StringVarP(&dsOut, "output", "o", "", outputFlagHelp)
	get.AddCommand(nodes, dss)
}

// addClusterDelete adds `delete daemonset` and `delete node`.
func addClusterDelete(o *options, del *cobra.Command) {
	var delNS string
	delDS := &cobra.Command{
		Use:     "daemonset NAME",
		Aliases: []string{"daemonsets", "ds"},
		Short:   "Delete a DaemonSet from the cluster; its pods stop on every node",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().DeleteDaemonSet(cmd.Context(), delNS, args[0]); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					return fmt.Errorf("daemonsets.apps %q not found", args[0])
				}
				return err
			}
			fmt.Fprintf(o.out, "daemonset.apps %q deleted\n", args[0])
			return nil
		},
	}
	delDS.Flags().StringVarP(&delNS, "namespace", "n", "default", "the namespace")
	var forceNode bool
	delNode := &cobra.Command{
		Use:     "node NAME",
		Aliases: []string{"nodes", "no"},
		Short:   "Remove a node that is gone for good (NotReady) from the cluster, with its etcd member",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().DeleteNode(cmd.Context(), args[0], forceNode); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					return fmt.Errorf("nodes %q not found", args[0])
				}
				return err
			}
			fmt.Fprintf(o.out, "node %q deleted\n", args[0])
			return nil
		},
	}
	delNode.Flags().BoolVar(&forceNode, "force", false, "remove the node even though it is Ready: its etcd user goes first, so its certificates, valid until they expire, grant nothing more (a node lost to an attacker)")
	del.AddCommand(delDS, delNode)
}

// readManifest reads a file, or stdin for "-".
func readManifest(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	}
	return os.ReadFile(file)
}

// splitDocuments splits a YAML stream at its --- separators, dropping empty documents.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("no objects in the manifest")
	}
	return docs, nil
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

// addClusterDescribe adds `describe node` and `describe daemonset`.
func addClusterDescribe(o *options, describe *cobra.Command) {
	describe.AddCommand(&cobra.Command{
		Use:     "node NAME",
		Aliases: []string{"nodes", "no"},
		Short:   "Describe a cluster node (kubectl describe node)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, err := o.client().Nodes(cmd.Context())
			if err != nil {
				return err
			}
			for i := range nodes {
				if nodes[i].Name == args[0] {
					return printers.DescribeNode(o.out, &nodes[i], time.Now())
				}
			}
			return fmt.Errorf("nodes %q not found", args[0])
		},
	})
	var ns string
	describeDS := &cobra.Command{
		Use:     "daemonset NAME",
		Aliases: []string{"daemonsets", "ds"},
		Short:   "Describe a DaemonSet (kubectl describe daemonset)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := o.client().DaemonSets(cmd.Context())
			if err != nil {
				return err
			}
			for i := range list {
				if list[i].Namespace == ns && list[i].Name == args[0] {
					return printers.DescribeDaemonSet(o.out, &list[i], time.Now())
				}
			}
			return fmt.Errorf("daemonsets.apps %q not found", args[0])
		},
	}
	describeDS.Flags().StringVarP(&ns, "namespace", "n", "default", "the namespace")
	describe.AddCommand(describeDS)
}

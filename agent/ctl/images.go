package ctl

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/image"
)

func (o *options) store() (*image.Store, error) {
	s, err := image.Open(filepath.Join(o.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("image store under %s: %w (is --root right? agentd's default is %s)", o.root, err, DefaultRoot)
	}
	return s, nil
}

func newImageCommand(o *options) *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Manage local images"}
	img.AddCommand(&cobra.Command{
		Use:   "import FILE...",
		Short: "Import images from OCI image archives or `docker save` archives",
		Args:  cobra.MinimumNArgs(1),
		Long: "Import images from OCI image archives or `docker save` archives: through agentd when it runs " +
			"(into its store, held to its image-max-size and image-store-max-size settings), else straight into " +
			"the store under --root (held to the defaults: 32Gi per image). An image over a limit is refused and " +
			"nothing of it is left in the store.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("root") && os.Getenv("AGENT_ROOT") == "" {
				done, err := importThroughAgent(cmd, o, args)
				if done || err != nil {
					return err
				}
			}
			s, err := o.store()
			if err != nil {
				return err
			}
			for _, f := range args {
				imgs, err := s.Import(cmd.Context(), f)
				if err != nil {
					return fmt.Errorf("import %s: %w", f, err)
				}
				for _, i := range imgs {
					fmt.Fprintf(o.out, "Loaded image: %s (%s)\n", strings.Join(i.Names, ", "), shortID(i.ID))
				}
			}
			return nil
		},
	})
	img.AddCommand(&cobra.Command{
		Use:     "rm IMAGE...",
		Aliases: []string{"remove"},
		Short:   "Remove images by name or ID",
		Long: "Remove images by name or ID: through agentd when it runs, which refuses to delete an image a " +
			"container uses (as `docker rmi` does; taking one of several names off it is fine), else straight " +
			"from the store under --root.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			viaAgent := !cmd.Flags().Changed("root") && os.Getenv("AGENT_ROOT") == ""
			for i, ref := range args {
				if viaAgent {
					err := o.client().RemoveImage(cmd.Context(), ref)
					if err == nil {
						fmt.Fprintf(o.out, "Untagged: %s\n", ref)
						continue
					}
					if !errors.Is(err, api.ErrUnreachable) || i > 0 {
						return fmt.Errorf("remove %s: %s", ref, api.CleanMessage(err))
					}
					viaAgent = false
				}
				s, err := o.store()
				if err != nil {
					return err
				}
				if err := s.Remove(ref); err != nil {
					return err
				}
				fmt.Fprintf(o.out, "Untagged: %s\n", ref)
			}
			return nil
		},
	})
	img.AddCommand(newPullCommand(o))
	img.AddCommand(&cobra.Command{
		Use:   "prune",
		Short: "Remove every image no container uses",
		Long: "Remove every image no container uses, whatever its age and the disk usage (`crictl rmi --prune`). " +
			"It needs agentd: only agentd knows which images its containers use.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := o.client().PruneImages(cmd.Context())
			for _, i := range imgs {
				fmt.Fprintf(o.out, "Deleted: %s (%s)\n", strings.Join(i.Names, ", "), shortID(i.ID))
			}
			if err != nil {
				return fmt.Errorf("prune: %s", api.CleanMessage(err))
			}
			if len(imgs) == 0 {
				fmt.Fprintln(o.out, "No unused images")
			}
			return nil
		},
	})
	return img
}

// newGetCommand builds `get images|pods|events|nodes|daemonsets`.
func newGetCommand(o *options) *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Display resources"}
	get.AddCommand(&cobra.Command{
		Use:     "images",
		Aliases: []string{"image"},
		Short:   "List local images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("root") && os.Getenv("AGENT_ROOT") == "" {
				imgs, err := o.client().Images(cmd.Context())
				if err == nil {
					return printImageList(o, imgs)
				}
				if !errors.Is(err, api.ErrUnreachable) {
					return err
				}
			}
			s, err := o.store()
			if err != nil {
				return err
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			var list []api.Image
			for _, i := range imgs {
				list = append(list, api.Image{ID: i.ID, Names: i.Names, Size: i.Size})
			}
			return printImageList(o, list)
		},
	})
	addGetPods(o, get)
	addGetEvents(o, get)
	addClusterGet(o, get)
	return get
}

// importThroughAgent imports through a running agentd; done is false when none answers.
func importThroughAgent(cmd *cobra.Command, o *options, files []string) (bool, error) {
	for i, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return true, err
		}
		imgs, err := o.client().ImportImage(cmd.Context(), abs)
		if errors.Is(err, api.ErrUnreachable) && i == 0 {
			return false, nil
		}
		if err != nil {
			return true, fmt.Errorf("import %s: %s", f, api.CleanMessage(err))
		}
		for _, img := range imgs {
			fmt.Fprintf(o.out, "Loaded image: %s (%s)\n", strings.Join(img.Names, ", "), shortID(img.ID))
		}
	}
	return true, nil
}

func printImageList(o *options, imgs []api.Image) error {
	w := tabwriter.NewWriter(o.out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tSIZE")
	for _, i := range imgs {
		size := units.HumanSizeWithPrecision(float64(i.Size), 3)
		for _, r := range imageRows(i.Names) {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.repo, r.tag, r.digest, shortID(i.ID), size)
		}
	}
	return w.Flush()
}

type imageRow struct{ repo, tag, digest string }

// imageRows are the rows of one image in `get images`, as `docker images
// --digests` has them: one per tag, with the repo digest of its repository
// when the image was pulled from it; a repository known by digest only gets
// a row with tag <none>; an image without names one row of <none>.
func imageRows(names []string) []imageRow {
	digests := map[string]string{} // repository → repo digest
	var repos []string
	for _, n := range names {
		if repo, d, ok := strings.Cut(n, "@"); ok {
			if _, seen := digests[repo]; !seen {
				repos = append(repos, repo)
			}
			digests[repo] = d
		}
	}
	var rows []imageRow
	tagged := map[string]bool{}
	for _, n := range names {
		if strings.Contains(n, "@") {
			continue
		}
		repo, tag := splitName(n)
		tagged[repo] = true
		rows = append(rows, imageRow{repo, tag, cmp.Or(digests[repo], "<none>")})
	}
	for _, repo := range repos {
		if !tagged[repo] {
			rows = append(rows, imageRow{repo, "<none>", digests[repo]})
		}
	}
	if len(rows) == 0 {
		rows = append(rows, imageRow{"<none>", "<none>", "<none>"})
	}
	return rows
}

// splitName splits "registry/repo:tag" at the tag's colon (not a registry port's).
func splitName(n string) (string, string) {
	slash := strings.LastIndex(n, "/")
	if i := strings.LastIndex(n, ":"); i > slash {
		return n[:i], n[i+1:]
	}
	return n, "<none>"
}

// shortID is the 12 hex digits Docker shows.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

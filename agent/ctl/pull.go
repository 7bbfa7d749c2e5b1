package ctl

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/agentd-project/agentd/agent/api"
)

func newPullCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from its registry",
		Long: "Pull an image from its registry into agentd's store, with agentd's registries configuration " +
			"(registries-config: mirrors, plain-HTTP endpoints, CAs) and credentials (image-pull-auth-file, kubelet's " +
			"docker config files, credential providers). Shows each layer's progress, redrawn in place on a terminal. " +
			"Ctrl-C ends the pull. It needs agentd.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			pr := newPullPrinter(o.out, terminalWidth(o.out))
			res, err := o.client().PullImage(cmd.Context(), ref, pr.update)
			if err != nil {
				return fmt.Errorf("%s", api.CleanMessage(err))
			}
			if res.Digest != "" {
				fmt.Fprintf(o.out, "Digest: %s\n", res.Digest)
			}
			fmt.Fprintf(o.out, "Pulled: %s (%s, %s in %s)\n", strings.Join(tagNames(res.Image.Names), ", "), shortID(res.Image.ID),
				units.HumanSizeWithPrecision(float64(res.Image.Size), 3), res.Duration.Truncate(time.Millisecond))
			return nil
		},
	}
}

// tagNames are the names that are not repo digests, or all when none is.
func tagNames(names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.Contains(n, "@") {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return names
	}
	return out
}

// terminalWidth is the width of the terminal w writes to, or 0 when w is no terminal.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
		return width
	}
	return 80
}

// pullPrinter shows a pull's progress: on a terminal one line per layer,
// redrawn in place (each cut to the terminal's width, so that none wraps and
// throws the redraw off); otherwise a line per status change (byte counts are
// not repeated, so that a log stays short).
type pullPrinter struct {
	w     io.Writer
	width int      // the terminal's; 0 when not a terminal
	order []string // layers by first appearance; "" is the manifest and config
	state map[string]api.PullProgress
	drawn int               // lines drawn by the last redraw (tty)
	shown map[string]string // the status last printed per layer (not a tty)
}

func newPullPrinter(w io.Writer, width int) *pullPrinter {
	return &pullPrinter{w: w, width: width, state: map[string]api.PullProgress{}, shown: map[string]string{}}
}

func (p *pullPrinter) update(pp api.PullProgress) {
	if _, ok := p.state[pp.Layer]; !ok {
		p.order = append(p.order, pp.Layer)
	}
	p.state[pp.Layer] = pp
	if p.width == 0 {
		if p.shown[pp.Layer] != pp.Status {
			p.shown[pp.Layer] = pp.Status
			fmt.Fprintln(p.w, progressLine(pp, false))
		}
		return
	}
	p.redraw()
}

// redraw moves the cursor up over the lines drawn before and draws every
// layer's line again, each cleared first.
func (p *pullPrinter) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, l := range p.order {
		b.WriteString("\x1b[2K")
		line := progressLine(p.state[l], true)
		if len(line) >= p.width {
			line = line[:p.width-1]
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}

// progressLine is one layer's line: "<short digest>: <status> <done>/<total>",
// with a bar on a terminal while it downloads.
func progressLine(pp api.PullProgress, bar bool) string {
	name := shortID(pp.Layer)
	if pp.Layer == "" {
		name = "manifest"
	}
	line := name + ": " + pp.Status
	if pp.Status != "Downloading" || pp.Total == 0 {
		return line
	}
	total := "?"
	if pp.Total > 0 {
		total = units.HumanSizeWithPrecision(float64(pp.Total), 3)
	}
	counts := units.HumanSizeWithPrecision(float64(pp.Done), 3) + "/" + total
	if !bar || pp.Total <= 0 {
		return line + " " + counts
	}
	const width = 30
	n := int(min(pp.Done, pp.Total) * width / pp.Total)
	return fmt.Sprintf("%s [%s>%s] %s", line, strings.Repeat("=", n), strings.Repeat(" ", width-n), counts)
}

package explain

import (
	"fmt"
	"io"
	"strings"

	"github.com/pullgate/pullgate/pkg/validate"
)

// Write prints the report for a terminal.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "Pod %s/%s (%s, from %s)\n", r.Namespace, r.Pod, r.Phase, r.Owner)
	node := "not scheduled"
	if r.Node != "" {
		node = r.Node
	}
	fmt.Fprintf(w, "  Node:      %s\n", node)
	if len(r.Platforms) > 0 {
		fmt.Fprintf(w, "  Platforms: %s\n", strings.Join(r.Platforms, "; "))
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  Skipped:   %s\n", s)
	}
	for _, c := range r.Containers {
		if !c.Failing() && len(c.Findings) == 0 {
			fmt.Fprintf(w, "\n  Container %q (%s): pulls; nothing to fix\n", c.Name, c.Image)
			continue
		}
		state := c.Waiting
		if state == "" {
			state = "not failing now"
		}
		fmt.Fprintf(w, "\n  Container %q (%s): %s\n", c.Name, c.Image, state)
		if len(c.Causes) > 0 {
			fmt.Fprintf(w, "    Cause:    %s\n", strings.Join(c.Causes, "; "))
		}
		fmt.Fprintln(w, "    Evidence:")
		if c.KubeletMessage != "" {
			fmt.Fprintf(w, "      kubelet (status):  %s\n", c.KubeletMessage)
		}
		for _, ev := range c.Events {
			fmt.Fprintf(w, "      kubelet (event):   %s\n", ev)
		}
		if len(c.Findings) == 0 {
			fmt.Fprintln(w, "      registry (now):    the image resolves with the pod's credentials; no finding")
		}
		for _, f := range c.Findings {
			fmt.Fprintf(w, "      registry (now):    [%s] %s (%s)\n", f.Reason, f.Message, severity(f))
		}
		if c.Verdict != "" {
			fmt.Fprintf(w, "    Verdict:  %s\n", c.Verdict)
		}
		if len(c.Fix) > 0 {
			fmt.Fprintln(w, "    Fix:")
			for _, cmd := range c.Fix {
				fmt.Fprintf(w, "      %s\n", cmd)
			}
		}
	}
}

func severity(f validate.Finding) string {
	if f.Severity == validate.Deny {
		return "pullgate would deny"
	}
	return "pullgate would warn"
}

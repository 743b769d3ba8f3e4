package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit codes of kubectl-pullgate.
const (
	// ExitOK: nothing would be denied.
	ExitOK = 0
	// ExitDenied: something would be denied (check), or would fail to pull (audit).
	ExitDenied = 1
	// ExitError: bad usage, unreadable or unparseable input, unreachable cluster.
	ExitError = 2
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// denied is the silent error of a command that ran and found what makes it exit 1.
var denied = &exitError{code: ExitDenied}

// options are what every command shares.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	version string
	// progress says whether to print progress on stderr: only to a terminal.
	progress bool
	// policyFile and policyConfigMap say where the policy comes from.
	policyFile, policyConfigMap string
}

// NewCommand returns the kubectl-pullgate command.
func NewCommand(streams genericiooptions.IOStreams, version string) *cobra.Command {
	o := &options{
		flags:    genericclioptions.NewConfigFlags(true),
		streams:  streams,
		version:  version,
		progress: isTerminal(streams.ErrOut),
	}
	root := &cobra.Command{
		Use:   "kubectl-pullgate",
		Short: "Explain, predict and audit image pulls with pullgate's checks",
		Long: `kubectl pullgate asks the registries what the kubelet would get, with the credentials it
would use, for the platforms of the nodes: why a pod fails to pull (explain), whether
manifests would pull before they are applied (check), and what in a cluster would fail to
pull if it were rescheduled now (audit).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl pullgate"},
	}
	o.flags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&o.policyFile, "policy", "", "policy.yaml to check with (default: the cluster's pullgate policy ConfigMap when a cluster is read, else pullgate's defaults)")
	root.PersistentFlags().StringVar(&o.policyConfigMap, "policy-configmap", "pullgate/pullgate-policy", "NAMESPACE/NAME of the cluster's policy ConfigMap, read when --policy is not given")
	root.AddCommand(newExplainCommand(o), newCheckCommand(o), newAuditCommand(o), newVersionCommand(o))
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitError, err: fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})
	return root
}

// Main runs the command with args and returns the process's exit code.
func Main(ctx context.Context, args []string, streams genericiooptions.IOStreams, version string) int {
	cmd := NewCommand(streams, version)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(streams.ErrOut, "error:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(streams.ErrOut, "error:", err)
	return ExitError
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(o.streams.Out, "kubectl-pullgate %s\n", o.version)
			return nil
		},
	}
}

// usage is a bad-usage error (exit 2).
func usage(format string, args ...any) error {
	return &exitError{code: ExitError, err: fmt.Errorf(format, args...)}
}

// progressf prints a progress line over the last one, on a terminal only.
func (o *options) progressf(format string, args ...any) {
	if !o.progress {
		return
	}
	fmt.Fprintf(o.streams.ErrOut, "\r\033[K"+format, args...)
}

// progressDone clears the progress line.
func (o *options) progressDone() {
	if o.progress {
		fmt.Fprint(o.streams.ErrOut, "\r\033[K")
	}
}

package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/validate"
	"github.com/pullgate/pullgate/pkg/workload"
)

type auditOptions struct {
	*options
	allNamespaces bool
	warnings      bool
}

func newAuditCommand(o *options) *cobra.Command {
	ao := &auditOptions{options: o}
	cmd := &cobra.Command{
		Use:   "audit [-n NAMESPACE | -A]",
		Short: "Check every workload now: what would fail to pull if its pods were rescheduled",
		Long: `audit checks the images of every workload of a namespace (or, with -A, of the cluster) —
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs
and bare Pods — now, with their pull secrets and against the nodes' platforms: an image or
tag deleted since admission, a pull secret rotated or gone, a node pool of another
architecture. It prints what would fail as a table and exits 1 when something would.`,
		Example: `  kubectl pullgate audit -A
  kubectl pullgate audit -n shop --warnings`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return ao.run(cmd.Context()) },
	}
	cmd.Flags().BoolVarP(&ao.allNamespaces, "all-namespaces", "A", false, "audit every namespace")
	cmd.Flags().BoolVar(&ao.warnings, "warnings", false, "also list what pullgate would only warn about")
	return cmd
}

// auditRow is one line of the table.
type auditRow struct {
	namespace, workload, container, image, reason, detail string
}

func (ao *auditOptions) run(ctx context.Context) error {
	ns, err := ao.namespace()
	if err != nil {
		return err
	}
	if ao.allNamespaces {
		ns = ""
	}
	c, err := ao.cluster()
	if err != nil {
		return err
	}
	pol, err := ao.loadPolicy(ctx, c)
	if err != nil {
		return err
	}
	ao.progressf("listing workloads")
	workloads, listErr := workload.List(ctx, c, ns)
	if listErr != nil && len(workloads) == 0 {
		ao.progressDone()
		if apierrors.IsForbidden(listErr) {
			return &exitError{code: ExitError, err: listErr}
		}
		return ao.clusterError(c.host, listErr)
	}
	snapshot, skipped, err := ao.clusterNodes(ctx, c)
	if err != nil {
		return err
	}
	if skipped != "" {
		fmt.Fprintf(ao.streams.ErrOut, "note: no platform check: %s\n", skipped)
	}
	if listErr != nil {
		fmt.Fprintf(ao.streams.ErrOut, "note: some kinds were not audited: %v\n", listErr)
	}
	checker := &validate.Checker{Registry: ao.registries(pol), Nodes: func() *validate.Nodes { return snapshot }}

	// Namespace labels first, once each; then the workloads are checked in parallel, as the
	// webhook checks concurrent admissions with one Checker: a registry that hangs costs one
	// look-up timeout per batch, not one per workload.
	nsLabels := map[string]map[string]string{}
	for _, w := range workloads {
		if _, ok := nsLabels[w.Namespace]; ok {
			continue
		}
		var n corev1.Namespace
		var labels map[string]string
		if err := c.Get(ctx, types.NamespacedName{Name: w.Namespace}, &n); err == nil {
			labels = n.Labels
		}
		nsLabels[w.Namespace] = labels
	}
	perWorkload := make([][]auditRow, len(workloads))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		done     int
		failing  bool
		firstErr error
	)
	sem := make(chan struct{}, auditParallelism)
	for i, w := range workloads {
		if pol.NamespaceExempt(w.Namespace) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rows, fails, err := ao.auditOne(ctx, c, checker, pol, w, nsLabels[w.Namespace])
			mu.Lock()
			defer mu.Unlock()
			perWorkload[i] = rows
			failing = failing || fails
			if err != nil && firstErr == nil {
				firstErr = err
			}
			done++
			ao.progressf("checked %d/%d workloads", done, len(workloads))
		})
	}
	wg.Wait()
	if firstErr != nil {
		ao.progressDone()
		return firstErr
	}
	var rows []auditRow
	for _, r := range perWorkload {
		rows = append(rows, r...)
	}
	ao.progressDone()
	if len(rows) == 0 {
		fmt.Fprintf(ao.streams.Out, "%d workload%s checked: all would pull their images now.\n", len(workloads), map[bool]string{true: "s"}[len(workloads) != 1])
		return nil
	}
	slices.SortStableFunc(rows, func(a, b auditRow) int {
		return strings.Compare(a.namespace+"\x00"+a.workload, b.namespace+"\x00"+b.workload)
	})
	tw := tabwriter.NewWriter(ao.streams.Out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tCONTAINER\tIMAGE\tREASON\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.namespace, r.workload, r.container, r.image, r.reason, r.detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failing {
		return denied
	}
	return nil
}

// auditParallelism bounds the workloads checked at once.
const auditParallelism = 8

// auditOne checks one workload now and returns its rows, and whether some would fail.
func (ao *auditOptions) auditOne(ctx context.Context, c *cluster, checker *validate.Checker, pol *policy.Policy, w workload.Workload, labels map[string]string) ([]auditRow, bool, error) {
	var rows []auditRow
	keyring, err := pullsecrets.ForPod(ctx, c, w.Namespace, w.Spec)
	credsKnown := err == nil
	if err != nil {
		if !apierrors.IsForbidden(err) {
			return nil, false, ao.clusterError(c.host, err)
		}
		keyring = nil
		rows = append(rows, auditRow{w.Namespace, w.Key(), "-", "-", "Skipped", "pull-secret check skipped: your credentials may not read its secrets (forbidden)"})
	}
	lctx, cancel := context.WithTimeout(ctx, 2*pol.LookupTimeout.Duration)
	findings := checker.Check(lctx, pol, w.Pod(labels, keyring))
	cancel()
	failing := false
	for _, f := range findings {
		if !credsKnown && isCredentialReason(f.Reason) {
			continue
		}
		if f.Severity == validate.Deny {
			failing = true
		} else if !ao.warnings && !registryFailure(f.Reason) {
			continue
		}
		ctr := f.Container
		if f.Volume != "" {
			ctr = "volume " + f.Volume
		}
		if ctr == "" {
			ctr = "-"
		}
		img := f.Image
		if img == "" {
			img = "-"
		}
		detail := f.Message
		if f.Severity != validate.Deny {
			detail = "(warning) " + detail
		}
		rows = append(rows, auditRow{w.Namespace, w.Key(), ctr, img, string(f.Reason), detail})
	}
	return rows, failing, nil
}

func registryFailure(r validate.Reason) bool {
	return r == validate.RegistryUnreachable || r == validate.RegistryRateLimited || r == validate.RegistryError
}

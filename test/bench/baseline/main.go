// Command baseline is the do-nothing webhook pullgate's benchmark measures against: the
// same stack as pullgate (a controller-runtime manager with its webhook, metrics and probe
// servers, TLS from --cert-dir, the AdmissionReview decoded by admission.Webhook) whose
// handler allows every request. The difference between the two is what pullgate's checks
// cost. It takes the same serving flags as cmd/webhook.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func main() {
	certDir := flag.String("cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key")
	port := flag.Int("port", 9443, "HTTPS port of the webhook server")
	metricsAddr := flag.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	probeAddr := flag.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	pprofAddr := flag.String("pprof-bind-address", "", "address of the net/http/pprof endpoints; empty or 0 disables them")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(ctrl.SetupSignalHandler(), *certDir, *port, *metricsAddr, *probeAddr, *pprofAddr); err != nil {
		ctrl.Log.Error(err, "baseline webhook failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, certDir string, port int, metricsAddr, probeAddr, pprofAddr string) error {
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
		WebhookServer:          webhook.NewServer(webhook.Options{Port: port, CertDir: certDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})
	mgr.GetWebhookServer().Register("/validate", &admission.Webhook{Handler: allow})
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

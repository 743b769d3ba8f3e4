// Command kubectl-pullgate is pullgate's kubectl plugin (`kubectl pullgate ...`): explain a
// pod failing to pull, check manifests before they are applied, audit a cluster. The
// commands are in pkg/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/pullgate/pullgate/pkg/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, version)
	stop()
	os.Exit(code)
}

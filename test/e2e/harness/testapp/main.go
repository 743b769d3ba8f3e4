// Command testapp is the one program in every image the e2e and the demo push: the real node
// runs it as its sandbox (pause) image and as every workload's container. Built static, for
// amd64 and arm64, so that nothing comes from the internet.
//
// With no arguments it waits for SIGTERM or SIGINT and exits 0, as a pause container does.
// With "exit" it exits 0 at once: a Job's pod that completes.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exit" {
		fmt.Println("testapp: done")
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

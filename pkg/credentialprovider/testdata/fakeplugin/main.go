// Command fakeplugin is a kubelet credential provider plugin for tests: it speaks the
// credentialprovider.kubelet.k8s.io protocol on stdin and stdout, and does what its flags
// say, so that the tests run a real executable as the kubelet would.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	mode := flag.String("mode", "ok", "ok, fail, hang, garbage")
	apiVersion := flag.String("api-version", "credentialprovider.kubelet.k8s.io/v1", "apiVersion of the response")
	cacheKeyType := flag.String("cache-key-type", "Image", "cacheKeyType of the response")
	cacheDuration := flag.String("cache-duration", "", "cacheDuration of the response; empty leaves it out")
	key := flag.String("key", "", "auth key; empty is the request's image")
	user := flag.String("user", "plugin-user", "username")
	password := flag.String("password", "plugin-pass", "password")
	log := flag.String("log", "", "file to append the request and $FAKEPLUGIN_ENV to, one line per run")
	flag.Parse()

	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Exit(3)
	}
	var req struct {
		APIVersion          string            `json:"apiVersion"`
		Kind                string            `json:"kind"`
		Image               string            `json:"image"`
		ServiceAccountToken string            `json:"serviceAccountToken"`
		Annotations         map[string]string `json:"serviceAccountAnnotations"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		fmt.Fprintln(os.Stderr, "bad request")
		os.Exit(2)
	}
	if *log != "" {
		f, err := os.OpenFile(*log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			line, _ := json.Marshal(map[string]any{"request": req, "env": os.Getenv("FAKEPLUGIN_ENV"), "args": flag.Args()})
			fmt.Fprintln(f, string(line))
			f.Close()
		}
	}
	switch *mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "secret-looking stderr: hunter2")
		os.Exit(1)
	case "hang":
		time.Sleep(time.Hour)
	case "garbage":
		fmt.Println("this is not json " + strings.Repeat("x", 10))
		return
	}
	k := *key
	if k == "" {
		k = req.Image
	}
	resp := map[string]any{
		"apiVersion":   *apiVersion,
		"kind":         "CredentialProviderResponse",
		"cacheKeyType": *cacheKeyType,
		"auth":         map[string]any{k: map[string]string{"username": *user, "password": *password}},
	}
	if *cacheDuration != "" {
		resp["cacheDuration"] = *cacheDuration
	}
	json.NewEncoder(os.Stdout).Encode(resp)
}

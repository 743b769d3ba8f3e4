package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

// TestDockerfile checks what cannot be seen without building the image (there is no
// Docker engine in CI): a static, reproducible build of cmd/webhook with its version, on a
// final image pinned by digest that runs as a numeric non-root user.
func TestDockerfile(t *testing.T) {
	data, err := readFile(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines, drop comments.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(data), " ")
	var lines []string
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms []string
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			froms = append(froms, l)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got %d FROM lines", len(froms))
	}
	final := froms[len(froms)-1]
	if !regexp.MustCompile(`^FROM gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`).MatchString(final) {
		t.Errorf("final stage %q: want gcr.io/distroless/static-debian12:nonroot pinned by digest", final)
	}
	if !strings.Contains(froms[0], "golang:1.26") {
		t.Errorf("builder %q: want golang:1.26 (go.mod's Go)", froms[0])
	}

	// The webhook's build, and the kubectl plugin's (the plugin target) with the same flags.
	for _, cmd := range []string{"./cmd/webhook", "./cmd/kubectl-pullgate"} {
		var build string
		for _, l := range lines {
			if strings.Contains(l, "go build") && strings.HasSuffix(l, cmd) {
				build = l
			}
		}
		for _, want := range []string{"-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, cmd} {
			if !strings.Contains(build, want) {
				t.Errorf("go build line of %s lacks %s: %q", cmd, want, build)
			}
		}
	}
	for _, want := range []string{"ENV CGO_ENABLED=0", "ARG VERSION", "USER 65532:65532", `ENTRYPOINT ["/webhook"]`} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	// The build context keeps what the build needs.
	ignore, err := readFile(filepath.Join(root(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"!go.mod", "!go.sum", "!cmd/", "!pkg/"} {
		if !slices.Contains(strings.Split(string(ignore), "\n"), want) {
			t.Errorf(".dockerignore does not let %s into the build context", strings.TrimPrefix(want, "!"))
		}
	}
}

// TestChartFlagsExist: every flag the chart passes is one the webhook binary defines (a
// renamed flag would crash-loop the pods).
func TestChartFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/webhook")
	}
	helm(t) // skips early without it
	// flag's -help prints the defined flags.
	out, _ := exec.Command(buildWebhook(t), "-help").CombinedOutput()
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		defined[m[1]] = true
	}
	if !defined["cert-dir"] {
		t.Fatalf("could not read the webhook's flags from -help:\n%s", out)
	}
	for _, in := range []install{
		{release: "pullgate", namespace: "pullgate"},
		{release: "pullgate", namespace: "pullgate", set: []string{"metrics.enabled=false", "logLevel=debug"}},
	} {
		d := one[*appsv1.Deployment](t, in.render(t))
		for name := range flags(t, d.Spec.Template.Spec.Containers[0].Args) {
			if !defined[name] {
				t.Errorf("the chart passes --%s, which cmd/webhook does not define", name)
			}
		}
	}
}

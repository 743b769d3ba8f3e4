package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// run runs kubectl-pullgate with args and stdin, as a user would.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(t.Context(), args, genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, "test")
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopbackPolicy lets the checks reach the test registries on 127.0.0.1.
const loopbackPolicy = "registries:\n  allowLoopback: true\n"

func deployment(name, image string, extra string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ` + name + `
spec:
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
` + extra + `      containers:
      - name: app
        image: ` + image + "\n"
}

func TestCheck(t *testing.T) {
	public := testregistry.New(t)
	public.PushImage(t, "shop/web", "1.0", "linux", "amd64")
	public.PushIndex(t, "shop/multi", "1.0", "linux/amd64", "linux/arm64")
	private := testregistry.New(t, testregistry.WithBasicAuth("puller", "s3cret"))
	private.PushImage(t, "billing/api", "2.0", "linux", "amd64")

	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", loopbackPolicy)
	secret := testregistry.PullSecret("", "billing-pull", private.Host, "puller", "s3cret")
	secretYAML := `apiVersion: v1
kind: Secret
metadata: {name: billing-pull}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: ` + base64.StdEncoding.EncodeToString(secret.Data[".dockerconfigjson"]) + "\n"
	withSecret := "      imagePullSecrets: [{name: billing-pull}]\n"
	good := writeFile(t, dir, "good.yaml", deployment("web", public.Ref("shop/web", ":1.0"), ""))
	badTag := writeFile(t, dir, "bad-tag.yaml", "# a comment\n---\n"+deployment("web", public.Ref("shop/web", ":1.1"), ""))
	amd64Only := writeFile(t, dir, "amd64.yaml", deployment("web", public.Ref("shop/web", ":1.0"), "      nodeSelector: {kubernetes.io/arch: arm64}\n"))
	privateNoSecret := writeFile(t, dir, "private.yaml", deployment("billing", private.Ref("billing/api", ":2.0"), withSecret))
	privateWithSecret := writeFile(t, dir, "private-secret.yaml", secretYAML+"---\n"+deployment("billing", private.Ref("billing/api", ":2.0"), withSecret))
	list := writeFile(t, dir, "list.json", `{"apiVersion":"v1","kind":"List","items":[
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"`+public.Ref("shop/multi", ":1.0")+`"}]}},
{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"b"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"`+public.Ref("shop/gone", ":1")+`"}]}}}}}}]}`)
	broken := writeFile(t, dir, "broken.yaml", deployment("web", public.Ref("shop/web", ":1.0"), "")+"---\nkind: [\n")
	tree := t.TempDir()
	writeFile(t, tree, "a.yaml", deployment("a", public.Ref("shop/web", ":1.0"), ""))
	writeFile(t, tree, "sub/b.yml", deployment("b", public.Ref("shop/web", ":9"), ""))
	writeFile(t, tree, "sub/notes.txt", "not a manifest")

	dockerConfig := t.TempDir()
	writeFile(t, dockerConfig, "config.json", `{"auths":{"`+private.Host+`":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("puller:s3cret"))+`"}}}`)

	tests := []struct {
		desc         string
		stdin        string
		dockerConfig string
		args         []string
		code         int
		contains     []string
		absent       []string
	}{
		{desc: "an image that exists is admitted", args: []string{"-f", good},
			code: 0, contains: []string{"deployment.apps/web admitted"}},
		{desc: "a missing tag is denied as kubectl apply would show it", args: []string{"-f", badTag},
			code: 1, contains: []string{`Error from server (PullWouldFail): error when creating "` + badTag + `": admission webhook "pullgate-validate.pullgate.io" denied the request: pullgate: Deployment would fail to pull its images:`, "[TagNotFound]", `tag "1.1" does not exist`, "closest: 1.0"}},
		{desc: "a platform no image is built for is denied", args: []string{"-f", amd64Only, "--platform", "linux/amd64,linux/arm64"},
			code: 1, contains: []string{"[PlatformMismatch]", "linux/arm64"}},
		{desc: "without --platform there is no platform check", args: []string{"-f", amd64Only},
			code: 0, contains: []string{"deployment.apps/web admitted"}},
		{desc: "a template's missing secret warns, as onMissingSecretInTemplate says", args: []string{"-f", privateNoSecret},
			code: 0, contains: []string{"Warning: pullgate [PullSecretMissing]", `"billing-pull"`, "deployment.apps/billing admitted"}},
		{desc: "the secret in the manifests is used", args: []string{"-f", privateWithSecret},
			code: 0, contains: []string{"deployment.apps/billing admitted"}, absent: []string{"s3cret"}},
		{desc: "the local docker config is used", args: []string{"-f", writeFile(t, dir, "private-anon.yaml", deployment("billing", private.Ref("billing/api", ":2.0"), ""))},
			dockerConfig: dockerConfig, code: 0, contains: []string{"deployment.apps/billing admitted"}},
		{desc: "without the local docker config a private image has no credentials", args: []string{"-f", filepath.Join(dir, "private-anon.yaml")},
			dockerConfig: t.TempDir(), code: 1, contains: []string{"[NoCredentials]"}},
		{desc: "a List in JSON: each item is checked", args: []string{"-f", list},
			code: 1, contains: []string{"pod/a admitted", "pullgate: CronJob would fail", "[ImageNotFound]"}},
		{desc: "standard input", stdin: deployment("web", public.Ref("shop/web", ":1.0"), ""), args: []string{"-f", "-"},
			code: 0, contains: []string{"deployment.apps/web admitted"}},
		{desc: "a directory, not recursive", args: []string{"-f", tree},
			code: 0, contains: []string{"deployment.apps/a admitted"}, absent: []string{"deployment.apps/b"}},
		{desc: "a directory, recursive", args: []string{"-f", tree, "-R"},
			code: 1, contains: []string{"deployment.apps/a admitted", `tag "9" does not exist`}},
		{desc: "an unparseable document names its file and index", args: []string{"-f", broken},
			code: 2, contains: []string{"parsing " + broken + ", document 1 (line 14)"}},
		{desc: "an unreadable file", args: []string{"-f", filepath.Join(dir, "nope.yaml")},
			code: 2, contains: []string{"reading " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"}},
		{desc: "a bad platform", args: []string{"-f", good, "--platform", "amd64"},
			code: 2, contains: []string{`--platform "amd64" is not OS/ARCH`}},
		{desc: "a bad output format", args: []string{"-f", good, "-o", "yaml"},
			code: 2, contains: []string{`--output "yaml"`}},
		{desc: "github annotations point at the document's line", args: []string{"-f", badTag, "-o", "github"},
			code: 1, contains: []string{"::error file=" + badTag + ",line=3,title=pullgate TagNotFound::deployment.apps/web container \"app\": tag \"1.1\""}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.dockerConfig == "" {
				tc.dockerConfig = t.TempDir()
			}
			t.Setenv("DOCKER_CONFIG", tc.dockerConfig)
			args := append([]string{"check", "--policy", pol}, tc.args...)
			code, stdout, stderr := run(t, tc.stdin, args...)
			out := stdout + stderr
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	public := testregistry.New(t)
	public.PushImage(t, "shop/web", "1.0", "linux", "amd64")
	dir := t.TempDir()
	pol := writeFile(t, dir, "policy.yaml", loopbackPolicy)
	f := writeFile(t, dir, "two.yaml", deployment("ok", public.Ref("shop/web", ":1.0"), "")+"---\n"+deployment("typo", public.Ref("shop/wbe", ":1.0"), ""))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	code, stdout, stderr := run(t, "", "check", "--policy", pol, "-f", f, "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	var got []Result
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if len(got) != 2 {
		t.Fatalf("%d results, want 2: %s", len(got), stdout)
	}
	if !got[0].Allowed || got[0].Name != "ok" || got[0].Line != 1 || len(got[0].Findings) != 0 {
		t.Errorf("first result = %+v, want ok allowed at line 1 without findings", got[0])
	}
	if got[1].Allowed || got[1].Name != "typo" || got[1].Document != 1 || got[1].Line != 14 ||
		len(got[1].Findings) != 1 || got[1].Findings[0].Reason != "ImageNotFound" || got[1].Findings[0].Container != "app" {
		t.Errorf("second result = %+v, want typo denied for ImageNotFound, document 1 at line 14", got[1])
	}
}

package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

type got struct {
	Kind, Name string
	Doc, Line  int
	Typed      bool
}

func TestRead(t *testing.T) {
	tests := []struct {
		desc  string
		input string
		want  []got
		err   string
	}{
		{desc: "documents, comments and empty documents",
			input: "# header\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\n# only a comment\n---\n\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n",
			want:  []got{{"Pod", "a", 0, 3, true}, {"Deployment", "b", 1, 11, true}}},
		{desc: "a v1 List is its items",
			input: `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}},{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}]}`,
			want:  []got{{"Secret", "s", 0, 1, true}, {"Widget", "w", 0, 1, false}}},
		{desc: "a document without kind", input: "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nmetadata: {name: b}\n",
			err: "parsing f.yaml, document 1 (line 5): Object 'Kind' is missing"},
		{desc: "a field of the wrong type", input: "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: 3}\n",
			err: "parsing f.yaml, document 0 (line 1): Pod \"a\""},
		{desc: "bad YAML", input: "apiVersion: v1\nkind: [\n", err: "parsing f.yaml, document 0 (line 1)"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			objs, err := Read("f.yaml", strings.NewReader(tc.input))
			if tc.err != "" {
				var me *Error
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &me) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gots []got
			for _, o := range objs {
				_, untyped := o.Object.(*unstructured.Unstructured)
				gots = append(gots, got{o.Kind(), o.Object.GetName(), o.Document, o.Line, !untyped})
			}
			if diff := cmp.Diff(tc.want, gots); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretStringData(t *testing.T) {
	objs, err := Read("s.yaml", strings.NewReader("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{}'\n"))
	if err != nil {
		t.Fatal(err)
	}
	sec, ok := objs[0].Object.(*corev1.Secret)
	if !ok {
		t.Fatalf("object is %T, want *corev1.Secret", objs[0].Object)
	}
	if got := string(sec.Data[corev1.DockerConfigJsonKey]); got != "{}" || sec.StringData != nil {
		t.Errorf("data = %q, stringData = %v; want stringData merged into data as the API server does", got, sec.StringData)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.json", "c.txt", "sub/d.yml", "sub/deeper/e.yaml"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(fs []string) []string {
		for i, f := range fs {
			if r, err := filepath.Rel(dir, f); err == nil {
				fs[i] = r
			}
		}
		return fs
	}
	tests := []struct {
		desc      string
		args      []string
		recursive bool
		want      []string
	}{
		{"a directory: its manifests", []string{dir}, false, []string{"a.yaml", "b.json"}},
		{"recursive", []string{dir}, true, []string{"a.yaml", "b.json", "sub/d.yml", "sub/deeper/e.yaml"}},
		{"a file is read whatever its name", []string{filepath.Join(dir, "c.txt"), "-"}, false, []string{"c.txt", "-"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Files(tc.args, tc.recursive)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rel(got)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Files([]string{filepath.Join(dir, "missing")}, false); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing file: error = %v", err)
	}
}

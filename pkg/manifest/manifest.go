package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Stdin is the file name that reads standard input, as kubectl's -f - does.
const Stdin = "-"

// extensions are the files a directory contributes, as kubectl's FileExtensions.
var extensions = []string{".json", ".yaml", ".yml"}

// Object is one object of a manifest.
type Object struct {
	// File is the file it was read from ("-" for standard input).
	File string
	// Document is the index of its YAML document in File, from 0.
	Document int
	// Line is the line of File its document starts on, from 1.
	Line int
	// Object is the object, typed when the client-go scheme knows its kind, else
	// *unstructured.Unstructured.
	Object client.Object
}

// Kind is the object's kind, as written in the manifest.
func (o Object) Kind() string { return o.Object.GetObjectKind().GroupVersionKind().Kind }

// Error is a manifest that cannot be read or parsed.
type Error struct {
	File string
	// Document is the document's index, -1 when the file itself could not be read.
	Document int
	Line     int
	Err      error
}

func (e *Error) Error() string {
	if e.Document < 0 {
		return fmt.Sprintf("reading %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("parsing %s, document %d (line %d): %v", e.File, e.Document, e.Line, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Files expands the -f arguments into files: a file as named (whatever its extension), a
// directory's .json, .yaml and .yml files in lexical order, its subdirectories' too when
// recursive. "-" stays "-".
func Files(args []string, recursive bool) ([]string, error) {
	var out []string
	for _, arg := range args {
		if arg == Stdin {
			out = append(out, arg)
			continue
		}
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, &Error{File: arg, Document: -1, Err: errors.Unwrap(err)}
		}
		if !fi.IsDir() {
			out = append(out, arg)
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return &Error{File: path, Document: -1, Err: err}
			}
			if d.IsDir() {
				if path != arg && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if slices.Contains(extensions, filepath.Ext(path)) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadFile reads the objects of one file; stdin is read for "-".
func ReadFile(file string, stdin io.Reader) ([]Object, error) {
	var r io.Reader
	if file == Stdin {
		r = stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, &Error{File: file, Document: -1, Err: errors.Unwrap(err)}
		}
		defer f.Close()
		r = f
	}
	return Read(file, r)
}

// Read reads the objects of the documents in r, naming them file. Empty documents are
// skipped; a List's items are returned in its place.
func Read(file string, r io.Reader) ([]Object, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &Error{File: file, Document: -1, Err: err}
	}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Object
	// off is where the last document ended in data: each document the reader returns is a
	// slice of the input, found from there to learn its line.
	off := 0
	for doc := 0; ; {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		if err != nil {
			return nil, &Error{File: file, Document: doc, Line: line, Err: err}
		}
		if i := bytes.Index(data[off:], raw); i >= 0 {
			line = 1 + bytes.Count(data[:off+i], []byte("\n"))
			off += i + len(raw)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		start := line + leadingLines(raw)
		objs, err := decode(raw)
		if err != nil {
			return nil, &Error{File: file, Document: doc, Line: start, Err: err}
		}
		for _, o := range objs {
			out = append(out, Object{File: file, Document: doc, Line: start, Object: o})
		}
		doc++
	}
}

// leadingLines counts the lines of a document before its first line of content (the
// separator, blank lines, comments), so that Line points at the object.
func leadingLines(raw []byte) int {
	n := 0
	for _, l := range strings.SplitAfter(string(raw), "\n") {
		t := strings.TrimSpace(l)
		if t != "" && t != "---" && !strings.HasPrefix(t, "#") {
			return n
		}
		n++
	}
	return 0
}

func stripComments(raw []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(raw), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// decode turns one document into objects: typed for the kinds client-go knows, the items
// of a List (v1 List or any *List kind) one by one.
func decode(raw []byte) ([]client.Object, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, err
	}
	if u.IsList() {
		list, err := u.ToList()
		if err != nil {
			return nil, err
		}
		var out []client.Object
		for i := range list.Items {
			o, err := typed(&list.Items[i])
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, o)
		}
		return out, nil
	}
	o, err := typed(u)
	if err != nil {
		return nil, err
	}
	return []client.Object{o}, nil
}

// typed converts u into its Go type when the client-go scheme knows its kind.
func typed(u *unstructured.Unstructured) (client.Object, error) {
	gvk := u.GroupVersionKind()
	if gvk.Kind == "" {
		return nil, errors.New("object has no kind")
	}
	if !clientgoscheme.Scheme.Recognizes(gvk) {
		return u, nil
	}
	obj, err := clientgoscheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
		return nil, fmt.Errorf("%s %q: %w", gvk.Kind, u.GetName(), err)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	co, ok := obj.(client.Object)
	if !ok {
		return u, nil
	}
	if s, ok := co.(*corev1.Secret); ok {
		mergeStringData(s)
	}
	return co, nil
}

// mergeStringData writes a Secret's stringData into its data, as the API server does on
// write (stringData wins).
func mergeStringData(s *corev1.Secret) {
	if len(s.StringData) == 0 {
		return
	}
	if s.Data == nil {
		s.Data = make(map[string][]byte, len(s.StringData))
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

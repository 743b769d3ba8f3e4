package webhook

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// A trial (issue 17): scanPullSpec written over a maintained streaming decoder,
// github.com/go-json-experiment/json/jsontext (Go 1.26's encoding/json/jsontext needs
// GOEXPERIMENT=jsonv2). Same rules as the hand-written scanner: keys match
// case-sensitively, a repeated key decodes into what the earlier one left, invalid UTF-8 in
// a string becomes U+FFFD, as sigs.k8s.io/json decodes. FuzzPullSpecScanJSONText compares it
// with the API server's decoder; BenchmarkScanPullSpec with the hand-written scanner.

var jsontextDecoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

type noInput struct{}

func (noInput) Read([]byte) (int, error) { return 0, io.EOF }

type tokenScanner struct{ d *jsontext.Decoder }

func scanPullSpecJSONText(data []byte, keys []string) (*pullSpec, error) {
	d := jsontextDecoders.Get().(*jsontext.Decoder)
	defer func() {
		d.Reset(noInput{}) // let go of data
		jsontextDecoders.Put(d)
	}()
	d.Reset(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	s := tokenScanner{d}
	var p pullSpec
	if err := s.path(keys, func() error { return s.pullSpec(&p) }); err != nil {
		return nil, err
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errSyntax)
	}
	return &p, nil
}

func (s tokenScanner) want(what string) error {
	return fmt.Errorf("%w at offset %d: want %s", errSyntax, s.d.InputOffset(), what)
}

// null consumes a null if it comes next.
func (s tokenScanner) null() bool {
	if s.d.PeekKind() == 'n' {
		_, _ = s.d.ReadToken()
		return true
	}
	return false
}

// object calls field for each member of the object that comes next; field must consume the
// value. A null is an empty object.
func (s tokenScanner) object(field func(key []byte) error) error {
	if s.null() {
		return nil
	}
	if s.d.PeekKind() != '{' {
		return s.want("an object")
	}
	if _, err := s.d.ReadToken(); err != nil {
		return err
	}
	for s.d.PeekKind() == '"' {
		raw, err := s.d.ReadValue()
		if err != nil {
			return err
		}
		key := raw[1 : len(raw)-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			if key, err = jsontext.AppendUnquote(nil, raw); err != nil {
				return err
			}
		}
		if err := field(key); err != nil {
			return err
		}
	}
	_, err := s.d.ReadToken() // '}', or the syntax error
	return err
}

// array calls elem for each element of the array that comes next; ok is false for null.
func (s tokenScanner) array(elem func() error) (ok bool, err error) {
	if s.null() {
		return false, nil
	}
	if s.d.PeekKind() != '[' {
		return false, s.want("an array")
	}
	if _, err := s.d.ReadToken(); err != nil {
		return false, err
	}
	for k := s.d.PeekKind(); k != ']' && k != 0; k = s.d.PeekKind() {
		if err := elem(); err != nil {
			return true, err
		}
	}
	_, err = s.d.ReadToken()
	return true, err
}

// str consumes a string value; null leaves it as it was.
func (s tokenScanner) str(into *string) error {
	if s.null() {
		return nil
	}
	if s.d.PeekKind() != '"' {
		return s.want("a string")
	}
	t, err := s.d.ReadToken()
	if err != nil {
		return err
	}
	*into = t.String()
	return nil
}

func (s tokenScanner) path(keys []string, at func() error) error {
	if len(keys) == 0 {
		return at()
	}
	return s.object(func(key []byte) error {
		if string(key) == keys[0] {
			return s.path(keys[1:], at)
		}
		return s.d.SkipValue()
	})
}

func (s tokenScanner) decode(into any) error {
	raw, err := s.d.ReadValue()
	if err != nil {
		return err
	}
	return sigsjson.UnmarshalCaseSensitivePreserveInts(raw, into)
}

func (s tokenScanner) pullSpec(p *pullSpec) error {
	return s.object(func(key []byte) error {
		switch string(key) {
		case "initContainers":
			return s.containers(&p.InitContainers)
		case "containers":
			return s.containers(&p.Containers)
		case "ephemeralContainers":
			return s.containers(&p.EphemeralContainers)
		case "imagePullSecrets":
			return tokenObjects(s, &p.ImagePullSecrets, func(ref *corev1.LocalObjectReference, key []byte) error {
				if string(key) == "name" {
					return s.str(&ref.Name)
				}
				return s.d.SkipValue()
			})
		case "serviceAccountName":
			return s.str(&p.ServiceAccountName)
		case "volumes":
			return s.volumes(&p.Volumes)
		case "nodeSelector":
			return s.stringMap(&p.NodeSelector)
		case "affinity":
			return s.decode(&p.Affinity)
		case "nodeName":
			return s.str(&p.NodeName)
		case "tolerations":
			return s.decode(&p.Tolerations)
		case "hostNetwork":
			return s.decode(&p.HostNetwork)
		}
		return s.d.SkipValue()
	})
}

func (s tokenScanner) stringMap(m *map[string]string) error {
	if s.null() {
		*m = nil
		return nil
	}
	if s.d.PeekKind() != '{' {
		return s.want("an object")
	}
	if *m == nil {
		*m = map[string]string{}
	}
	return s.object(func(key []byte) error {
		var v string
		if err := s.str(&v); err != nil {
			return err
		}
		(*m)[string(key)] = v
		return nil
	})
}

func (s tokenScanner) containers(into *[]pullContainer) error {
	return tokenObjects(s, into, func(c *pullContainer, key []byte) error {
		switch string(key) {
		case "name":
			return s.str(&c.Name)
		case "image":
			return s.str(&c.Image)
		case "imagePullPolicy":
			return s.str((*string)(&c.ImagePullPolicy))
		case "volumeMounts":
			return tokenObjects(s, &c.VolumeMounts, func(m *pullMount, key []byte) error {
				if string(key) == "name" {
					return s.str(&m.Name)
				}
				return s.d.SkipValue()
			})
		}
		return s.d.SkipValue()
	})
}

func (s tokenScanner) volumes(into *[]pullVolume) error {
	return tokenObjects(s, into, func(v *pullVolume, key []byte) error {
		switch string(key) {
		case "name":
			return s.str(&v.Name)
		case "image":
			if s.null() {
				v.Image = nil
				return nil
			}
			if s.d.PeekKind() != '{' {
				return s.want("an object")
			}
			if v.Image == nil {
				v.Image = &corev1.ImageVolumeSource{}
			}
			img := v.Image
			return s.object(func(key []byte) error {
				switch string(key) {
				case "reference":
					return s.str(&img.Reference)
				case "pullPolicy":
					return s.str((*string)(&img.PullPolicy))
				}
				return s.d.SkipValue()
			})
		}
		return s.d.SkipValue()
	})
}

// tokenObjects is scanObjects over the token scanner.
func tokenObjects[T any](s tokenScanner, into *[]T, field func(elem *T, key []byte) error) error {
	prev := *into
	out := prev[:0]
	ok, err := s.array(func() error {
		var elem T
		if i := len(out); i < cap(prev) {
			elem = prev[:cap(prev)][i]
		}
		err := s.object(func(key []byte) error { return field(&elem, key) })
		out = append(out, elem)
		return err
	})
	switch {
	case !ok:
		out = nil
	case out == nil:
		out = []T{}
	}
	*into = out
	return err
}

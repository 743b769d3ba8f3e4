package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// The scanner below reads a pull spec out of an object's JSON without decoding the rest.
// encoding/json, even into a struct holding only the pull fields, first validates the whole
// object and then walks every byte of what it skips, through reflection: about a fifth of a
// warm admission's CPU time. The object has already been validated by the AdmissionReview
// decode, so this walks it once, compares keys as bytes, and hands only the one nested value
// it keeps whole (node affinity, tolerations) to the API server's JSON decoder. It decodes as that
// decoder (sigs.k8s.io/json) does: keys match case-sensitively; a repeated key decodes into
// what the earlier one left (strings are replaced, maps and arrays of objects merged, see
// scanObjects); a value of the wrong type in a field it reads is an error. FuzzPullSpecScan
// compares the two.

var errSyntax = errors.New("malformed JSON")

// scanner walks JSON text. Every method leaves pos after what it consumed.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// next returns the next byte after white space, without consuming it; 0 at the end.
func (s *scanner) next() byte {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", errSyntax, s.pos, fmt.Sprintf(format, args...))
}

// null consumes a null literal if it comes next.
func (s *scanner) null() bool {
	if s.next() == 'n' && bytes.HasPrefix(s.data[s.pos:], []byte("null")) {
		s.pos += 4
		return true
	}
	return false
}

// object calls field for each member of the object that comes next, with its key as it is
// written between the quotes; field must consume the value. A null is an empty object.
func (s *scanner) object(field func(key []byte) error) error {
	if s.null() {
		return nil
	}
	if s.next() != '{' {
		return s.errorf("want an object")
	}
	s.pos++
	if s.next() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.next() != '"' {
			return s.errorf("want a key")
		}
		key, escaped, err := s.stringBytes()
		if err != nil {
			return err
		}
		if escaped {
			var k string
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts(key, &k); err != nil {
				return err
			}
			key = []byte(k)
		} else {
			key = key[1 : len(key)-1]
		}
		if s.next() != ':' {
			return s.errorf("want ':'")
		}
		s.pos++
		if err := field(key); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

// array calls elem for each element of the array that comes next; elem must consume it.
// A null is an empty array; ok is false for it, as encoding/json leaves a slice nil.
func (s *scanner) array(elem func() error) (ok bool, err error) {
	if s.null() {
		return false, nil
	}
	if s.next() != '[' {
		return false, s.errorf("want an array")
	}
	s.pos++
	if s.next() == ']' {
		s.pos++
		return true, nil
	}
	for {
		if err := elem(); err != nil {
			return true, err
		}
		switch s.next() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return true, nil
		default:
			return true, s.errorf("want ',' or ']'")
		}
	}
}

// stringBytes consumes the string that starts at pos and returns it with its quotes, and
// whether it needs unescaping (escapes, control or non-UTF-8 bytes).
func (s *scanner) stringBytes() (raw []byte, escaped bool, err error) {
	start := s.pos
	s.pos++ // the opening quote
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.data[start:s.pos], escaped, nil
		case c == '\\':
			escaped = true
			s.pos += 2
		case c < 0x20 || c >= utf8.RuneSelf:
			escaped = true
			s.pos++
		default:
			s.pos++
		}
	}
	return nil, false, s.errorf("unterminated string")
}

// str consumes a string value; null leaves it as it was, like encoding/json.
func (s *scanner) str(into *string) error {
	if s.null() {
		return nil
	}
	if s.next() != '"' {
		return s.errorf("want a string")
	}
	raw, escaped, err := s.stringBytes()
	if err != nil {
		return err
	}
	if escaped {
		// Rare: let the JSON decoder unescape, replace bad UTF-8 and refuse control bytes.
		return sigsjson.UnmarshalCaseSensitivePreserveInts(raw, into)
	}
	*into = string(raw[1 : len(raw)-1])
	return nil
}

// value consumes any value and returns its text.
func (s *scanner) value() ([]byte, error) {
	s.skipSpace()
	start := s.pos
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.data[start:s.pos], nil
}

// maxDepth bounds nesting like encoding/json does.
const maxDepth = 10000

// skip consumes any value. Objects and arrays are skipped by counting brackets outside
// strings, without looking at their members: the AdmissionReview decode has validated them.
func (s *scanner) skip() error {
	switch c := s.next(); {
	case c == '{' || c == '[':
		depth := 0
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case '"':
				if err := s.skipString(); err != nil {
					return err
				}
				continue
			case '{', '[':
				if depth++; depth > maxDepth {
					return s.errorf("nested too deeply")
				}
			case '}', ']':
				if depth--; depth == 0 {
					s.pos++
					return nil
				}
			}
			s.pos++
		}
		return s.errorf("unterminated object or array")
	case c == '"':
		return s.skipString()
	case c == 't' && bytes.HasPrefix(s.data[s.pos:], []byte("true")):
		s.pos += 4
	case c == 'f' && bytes.HasPrefix(s.data[s.pos:], []byte("false")):
		s.pos += 5
	case c == 'n' && bytes.HasPrefix(s.data[s.pos:], []byte("null")):
		s.pos += 4
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		for s.pos < len(s.data) && bytes.IndexByte([]byte("+-.0123456789eE"), s.data[s.pos]) >= 0 {
			s.pos++
		}
		// Let encoding/json judge the rare odd-looking number rather than accept it.
		if !json.Valid(s.data[start:s.pos]) {
			return s.errorf("invalid number")
		}
	default:
		return s.errorf("want a value")
	}
	return nil
}

// skipString consumes the string that starts at pos, jumping from quote to quote.
func (s *scanner) skipString() error {
	s.pos++ // the opening quote
	start := s.pos
	for {
		i := bytes.IndexByte(s.data[s.pos:], '"')
		if i < 0 {
			s.pos = len(s.data)
			return s.errorf("unterminated string")
		}
		end := s.pos + i
		s.pos = end + 1
		// A quote preceded by an odd number of backslashes is escaped.
		backslashes := 0
		for k := end - 1; k >= start && s.data[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return nil
		}
	}
}

// path walks the objects named by keys, in order, and calls at on the value found there.
// A key that is absent leaves at uncalled.
func (s *scanner) path(keys []string, at func() error) error {
	if len(keys) == 0 {
		return at()
	}
	return s.object(func(key []byte) error {
		if string(key) == keys[0] {
			return s.path(keys[1:], at)
		}
		return s.skip()
	})
}

// scanPullSpec reads the pull spec at the path of keys in data: ["spec"] for a Pod,
// ["spec", "template", "spec"] for a workload.
func scanPullSpec(data []byte, keys []string) (*pullSpec, error) {
	s := &scanner{data: data}
	var p pullSpec
	if err := s.path(keys, func() error { return s.pullSpec(&p) }); err != nil {
		return nil, err
	}
	if s.next() != 0 {
		return nil, s.errorf("data after the object")
	}
	return &p, nil
}

func (s *scanner) pullSpec(p *pullSpec) error {
	return s.object(func(key []byte) error {
		switch string(key) {
		case "initContainers":
			return s.containers(&p.InitContainers)
		case "containers":
			return s.containers(&p.Containers)
		case "ephemeralContainers":
			return s.containers(&p.EphemeralContainers)
		case "imagePullSecrets":
			return scanObjects(s, &p.ImagePullSecrets, func(ref *corev1.LocalObjectReference, key []byte) error {
				if string(key) == "name" {
					return s.str(&ref.Name)
				}
				return s.skip()
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
		return s.skip()
	})
}

// decode hands the value that comes next to the API server's JSON decoder, into what an
// earlier occurrence of the key left in into, as that decoder does with a repeated key.
func (s *scanner) decode(into any) error {
	raw, err := s.value()
	if err != nil {
		return err
	}
	return sigsjson.UnmarshalCaseSensitivePreserveInts(raw, into)
}

// stringMap reads an object of strings into m as encoding/json does: null makes m nil, a
// null member is "", members are added to a map that exists.
func (s *scanner) stringMap(m *map[string]string) error {
	if s.null() {
		*m = nil
		return nil
	}
	if s.next() != '{' {
		return s.errorf("want an object")
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

func (s *scanner) containers(into *[]pullContainer) error {
	return scanObjects(s, into, func(c *pullContainer, key []byte) error {
		switch string(key) {
		case "name":
			return s.str(&c.Name)
		case "image":
			return s.str(&c.Image)
		case "imagePullPolicy":
			return s.str((*string)(&c.ImagePullPolicy))
		case "volumeMounts":
			return scanObjects(s, &c.VolumeMounts, func(m *pullMount, key []byte) error {
				if string(key) == "name" {
					return s.str(&m.Name)
				}
				return s.skip()
			})
		}
		return s.skip()
	})
}

// volumes reads the name and image source of each volume; every other source is skipped.
func (s *scanner) volumes(into *[]pullVolume) error {
	return scanObjects(s, into, func(v *pullVolume, key []byte) error {
		switch string(key) {
		case "name":
			return s.str(&v.Name)
		case "image":
			// As encoding/json decodes into a pointer: null makes it nil, an object is
			// decoded into what it points to (allocated if nil).
			if s.null() {
				v.Image = nil
				return nil
			}
			if s.next() != '{' {
				return s.errorf("want an object")
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
				return s.skip()
			})
		}
		return s.skip()
	})
}

// scanObjects reads an array of objects into *into as encoding/json does, repeated keys
// included: the elements are decoded into the slice's backing array, so element i starts as
// whatever an earlier occurrence of the key left there (a field the repeat leaves out keeps
// its value, a null element leaves it whole), and null makes the slice nil.
func scanObjects[T any](s *scanner, into *[]T, field func(elem *T, key []byte) error) error {
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

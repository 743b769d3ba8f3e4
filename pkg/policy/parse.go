package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ErrTooLarge is wrapped by the error Parse and LoadFile return for a document larger than
// MaxSize. Such a document is not parsed at all.
var ErrTooLarge = errors.New("policy is larger than 1 MiB")

// ValidationError is the error Parse and Validate return for a policy that decodes but is
// not valid: every problem found, each naming the field it is about (e.g. "checks.platfrom",
// "cache.maxEntries", "registries.allowed[2]"). Its message is the field.ErrorList's
// aggregate message; errors.As finds each *field.Error through Unwrap.
type ValidationError struct {
	Errors field.ErrorList
}

// maxReportedErrors is how many field errors ValidationError's message shows.
const maxReportedErrors = 20

func (e *ValidationError) Error() string {
	if len(e.Errors) == 0 {
		return "invalid policy"
	}
	if len(e.Errors) > maxReportedErrors {
		return fmt.Sprintf("invalid policy: %s and %d more errors",
			e.Errors[:maxReportedErrors].ToAggregate().Error(), len(e.Errors)-maxReportedErrors)
	}
	return "invalid policy: " + e.Errors.ToAggregate().Error()
}

// Unwrap returns each field error.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// Parse reads a policy.yaml document. Decoding is strict: an unknown or duplicated field is
// an error, and field names match case-sensitively. Fields the document leaves out keep the
// value Default gives them (a check left out of checks keeps its default mode); an empty
// document is Default(). The result is validated; a document that decodes but is not valid
// gives a *ValidationError listing every problem. A document larger than MaxSize gives an
// error wrapping ErrTooLarge without being parsed.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("parsing policy: %w (%d bytes)", ErrTooLarge, len(data))
	}
	if err := singleDocument(data); err != nil {
		return nil, fmt.Errorf("parsing policy YAML: %w", err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("parsing policy YAML: %w", err)
	}
	p := Default()
	strictErrs, err := sigsjson.UnmarshalStrict(js, p,
		sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		// The decoder names the field of a type error but not of a bad duration, which
		// metav1.Duration reports by itself; look for those to say where they are.
		if errs := durationErrors(js); len(errs) > 0 {
			return nil, &ValidationError{Errors: errs}
		}
		return nil, fmt.Errorf("decoding policy: %w", err)
	}
	// A null checks (a bare "checks:") replaces the default map with nil: read it as unset.
	if p.Checks == nil {
		p.Checks = Default().Checks
	}
	var errs field.ErrorList
	for _, se := range strictErrs {
		errs = append(errs, strictFieldError(se))
	}
	errs = append(errs, p.validate()...)
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return p, nil
}

// LoadFile reads and parses the policy in the file at path. It reads at most MaxSize+1
// bytes, so a huge file fails with ErrTooLarge without being read whole.
func LoadFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("loading policy: reading %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("loading policy from %s: %w", path, err)
	}
	return p, nil
}

// singleDocument returns an error when data holds a YAML document after the first, other
// than empty ones ("---" at the end): the policy is the first document, and a second would
// otherwise be ignored without a word.
func singleDocument(data []byte) error {
	dec := yamlv2.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if i > 0 && doc != nil {
			return fmt.Errorf("the policy must be one YAML document, found another in document %d", i+1)
		}
	}
}

// UnmarshalJSON reads a mode. Besides a string it takes false, which is what YAML 1.1
// makes of an unquoted off (or no), as Off. Any other JSON value becomes a Mode holding
// its text, which Validate then reports with the field it is in.
func (m *Mode) UnmarshalJSON(b []byte) error {
	switch s := string(bytes.TrimSpace(b)); {
	case s == "null":
		return nil
	case s == "false":
		*m = Off
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*m = Mode(str)
		return nil
	default:
		*m = Mode(shorten(s))
		return nil
	}
}

// durationFields are the paths of the policy's metav1.Duration fields.
var durationFields = [][]string{
	{"lookupTimeout"},
	{"cache", "tagTTL"},
	{"cache", "negativeTTL"},
}

// durationErrors finds duration fields of the JSON document js that are not duration
// strings. It reports nothing when js is not an object.
func durationErrors(js []byte) field.ErrorList {
	var doc map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &doc); err != nil {
		return nil
	}
	var errs field.ErrorList
	for _, segs := range durationFields {
		v, ok := lookupPath(doc, segs)
		if !ok {
			continue
		}
		fp := field.NewPath(segs[0], segs[1:]...)
		s, isString := v.(string)
		if !isString {
			bad := v
			switch v.(type) {
			case map[string]any:
				bad = "<object>"
			case []any:
				bad = "<list>"
			}
			errs = append(errs, field.Invalid(fp, bad, `must be a duration string such as "30s" or "5m"`))
			continue
		}
		if _, err := time.ParseDuration(s); err != nil {
			errs = append(errs, field.Invalid(fp, shorten(s), `must be a duration such as "30s" or "5m"`))
		}
	}
	return errs
}

// lookupPath returns the value at segs in doc and whether it is there.
func lookupPath(doc map[string]any, segs []string) (any, bool) {
	var cur any = doc
	for _, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// strictFieldError turns a strict decoding error (unknown or duplicate field) into a field
// error; an unknown field's error lists the fields known at that level.
func strictFieldError(err error) *field.Error {
	var fe sigsjson.FieldError
	if !errors.As(err, &fe) {
		return field.Invalid(field.NewPath("<document>"), nil, shorten(err.Error()))
	}
	segs := strings.Split(fe.FieldPath(), ".")
	short := make([]string, len(segs))
	for i, s := range segs {
		short[i] = shorten(s)
	}
	fp := field.NewPath(short[0], short[1:]...)
	name := segs[len(segs)-1]
	if strings.HasPrefix(err.Error(), "duplicate field") {
		return field.Duplicate(fp, name)
	}
	detail := "unknown field"
	if known := knownFields(reflect.TypeFor[Policy](), segs[:len(segs)-1]); len(known) > 0 {
		detail += "; fields here are " + strings.Join(known, ", ")
	}
	return field.Invalid(fp, shorten(name), detail)
}

// knownFields returns the sorted JSON names of the fields of the struct reached from t by
// following the JSON names in segs, or nil when segs does not lead to a struct.
func knownFields(t reflect.Type, segs []string) []string {
	for _, s := range segs {
		if t.Kind() != reflect.Struct {
			return nil
		}
		next, ok := fieldByJSONName(t, s)
		if !ok {
			return nil
		}
		t = next
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if n := jsonName(f); n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func fieldByJSONName(t reflect.Type, name string) (reflect.Type, bool) {
	for f := range t.Fields() {
		if jsonName(f) == name {
			return f.Type, true
		}
	}
	return nil, false
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch tag {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return tag
}

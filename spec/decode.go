package spec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxManifestSize is the largest manifest file agentd reads (kubelet has no limit;
// a static pod is a few KiB, and a limit keeps a hostile file from costing memory).
const MaxManifestSize = 10 << 20

var (
	// ErrTooLarge is returned for a manifest over MaxManifestSize.
	ErrTooLarge = errors.New("manifest is larger than 10 MiB")
	// ErrSyntax is returned for input that is neither YAML nor JSON.
	ErrSyntax = errors.New("manifest is not valid YAML or JSON")
	// ErrInvalid is wrapped by every error that lists field errors.
	ErrInvalid = errors.New("invalid pod manifest")
)

// FieldErrors is the error returned when a manifest decodes but has field errors.
// It holds every error of the file, each with its field path.
type FieldErrors struct {
	List field.ErrorList
}

func (e *FieldErrors) Error() string {
	if len(e.List) == 1 {
		return FormatFieldError(e.List[0])
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d errors: ", len(e.List))
	for i, fe := range e.List {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(FormatFieldError(fe))
	}
	return b.String()
}

// Origins of the field errors spec makes itself, printed as "path: detail".
const (
	originUnknown     = "agentd:unknown-field"
	originUnsupported = "agentd:unsupported-field"
)

// maxShownValue bounds how much of a bad value an error message repeats.
const maxShownValue = 128

// FormatFieldError prints a field error as a user reads it: `spec.affinity: not
// supported by agentd`, `spec.containers[0].imagePullPolcy: unknown field`, and
// apimachinery's own wording for everything else.
func FormatFieldError(fe *field.Error) string {
	switch fe.Origin {
	case originUnknown, originUnsupported:
		return fe.Field + ": " + fe.Detail
	}
	if v, ok := fe.BadValue.(string); ok && len(v) > maxShownValue {
		short := *fe
		short.BadValue = v[:maxShownValue] + "..."
		return short.Error()
	}
	return fe.Error()
}

func (e *FieldErrors) Is(target error) bool { return target == ErrInvalid }

func fieldErrors(list field.ErrorList) error {
	if len(list) == 0 {
		return nil
	}
	return &FieldErrors{List: list}
}

// Decode parses one Pod from YAML or JSON, strictly: unknown and duplicate fields are
// errors naming their path, kind must be Pod and apiVersion v1, and a file holds one
// document. It neither defaults nor validates; see Parse.
func Decode(data []byte) (*corev1.Pod, error) {
	pod, _, err := decode(data)
	return pod, err
}

// decode also returns the document as JSON, for hashing.
func decode(data []byte) (*corev1.Pod, []byte, error) {
	pod := &corev1.Pod{}
	js, err := DecodeStrict(data, "Pod", "v1", pod)
	if err != nil {
		return nil, nil, err
	}
	return pod, js, nil
}

// DecodeStrict decodes one YAML or JSON manifest of the given kind and apiVersion into
// obj, as strictly as a Pod: at most MaxManifestSize, one document, no duplicate or
// unknown field (each named by its path). It returns the document as JSON. Errors are
// ErrTooLarge, ErrSyntax or a *FieldErrors.
func DecodeStrict(data []byte, kind, apiVersion string, obj any) ([]byte, error) {
	if len(data) > MaxManifestSize {
		return nil, ErrTooLarge
	}
	js, err := documentJSON(data, kind)
	if err != nil {
		return nil, err
	}
	if err := decodeStrictJSON(js, kind, apiVersion, obj); err != nil {
		return nil, err
	}
	return js, nil
}

// documentJSON is the one document of data (DecodeStrict's), as JSON: an object,
// without duplicate keys. Errors are ErrSyntax.
func documentJSON(data []byte, kind string) ([]byte, error) {
	doc, err := singleDocument(data, kind)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return nil, fmt.Errorf("%w: the document is not an object", ErrSyntax)
	}
	return js, nil
}

// decodeStrictJSON is DecodeStrict of a document documentJSON gave.
func decodeStrictJSON(js []byte, kind, apiVersion string, obj any) error {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return fieldErrors(field.ErrorList{typeError(err)})
	}
	var errs field.ErrorList
	switch tm.Kind {
	case kind:
	case "":
		errs = append(errs, field.Required(field.NewPath("kind"), "must be "+kind))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("kind"), tm.Kind, []string{kind}))
	}
	switch tm.APIVersion {
	case apiVersion:
	case "":
		errs = append(errs, field.Required(field.NewPath("apiVersion"), "must be "+apiVersion))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{apiVersion}))
	}
	if len(errs) > 0 {
		return fieldErrors(errs)
	}

	strict, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		return fieldErrors(field.ErrorList{typeError(err)})
	}
	for _, se := range strict {
		var fe sigsjson.FieldError
		if errors.As(se, &fe) {
			errs = append(errs, &field.Error{Type: field.ErrorTypeInvalid, Field: fe.FieldPath(),
				BadValue: field.OmitValueType{}, Detail: strictDetail(se), Origin: originUnknown})
			continue
		}
		errs = append(errs, field.InternalError(nil, se))
	}
	if len(errs) > 0 {
		return fieldErrors(errs)
	}
	return nil
}

// strictDetail turns `unknown field "x.y"` into a message that does not repeat the path.
func strictDetail(err error) string {
	msg := err.Error()
	switch {
	case bytes.HasPrefix([]byte(msg), []byte("unknown field")):
		return "unknown field"
	case bytes.HasPrefix([]byte(msg), []byte("duplicate field")):
		return "duplicate field"
	}
	return msg
}

// typeError converts a json type error (a string where a number belongs) into a field error.
func typeError(err error) *field.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return field.Invalid(field.NewPath(te.Field), te.Value, fmt.Sprintf("must be of type %s", te.Type))
	}
	return field.Invalid(nil, nil, err.Error())
}

// singleDocument returns the one non-empty YAML document in data. JSON is YAML, so
// it passes through unchanged.
func singleDocument(data []byte, kind string) ([]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var found []byte
	n := 0
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
		}
		if isEmptyDocument(doc) {
			continue
		}
		n++
		found = doc
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("%w: the file is empty", ErrSyntax)
	case 1:
		return found, nil
	}
	return nil, fmt.Errorf("%w: a manifest file holds one %s, this one has %d YAML documents", ErrSyntax, kind, n)
}

func isEmptyDocument(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || bytes.Equal(line, []byte("---")) {
			continue
		}
		return false
	}
	return true
}

// Package manifest reads Kubernetes manifests as `kubectl apply -f` takes them — files,
// directories (recursively with -R), "-" for standard input; multi-document YAML, JSON, and
// List kinds — into typed objects, each with the file, document and line it came from.
//
// It is hand-written over apimachinery's YAML reader rather than built on cli-runtime's
// resource.Builder because the builder reports neither the document index nor the line of
// an object (its StreamVisitor says "error parsing FILE"), and `kubectl pullgate check`
// must name both in its errors and its GitHub annotations.
package manifest

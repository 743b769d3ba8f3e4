// Package testregistry runs real OCI registries for tests: go-containerregistry's
// pkg/registry over httptest on 127.0.0.1, with images and multi-arch indexes pushed by
// remote.Write, optional basic auth, a request counter, and fault injection by wrapping
// the registry's handler.
package testregistry

// Package lookup holds the vocabulary the registry cache and the checks share: what a
// registry said about a reference (a Descriptor) and why a lookup did not give an answer
// (an Error with a Kind). It does no I/O, so pkg/validate can depend on it without depending
// on a registry client.
package lookup

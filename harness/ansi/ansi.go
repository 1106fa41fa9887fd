// Package ansi is a forwarding shim kept only until harness/lab imports artifacts/ansi
// (the normaliser moved there so that artifacts/report can use it). Delete this package
// once nothing imports it.
//
// Deprecated: import github.com/bootlab/bootlab/artifacts/ansi.
package ansi

import "github.com/bootlab/bootlab/artifacts/ansi"

// Normalizer is artifacts/ansi.Normalizer.
type Normalizer = ansi.Normalizer

// Normalize is artifacts/ansi.Normalize.
func Normalize(b []byte) []byte { return ansi.Normalize(b) }

// Package brokenscenarios does not compile, like a scenario package broken at the
// checkout being bisected from.
package brokenscenarios

import "testing"

func TestAnything(t *testing.T) {
	undefinedHelper(t)
}

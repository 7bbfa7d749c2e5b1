package admission

import (
	"testing"

	"k8s.io/pod-security-admission/api"
)

// BenchmarkCheck is the cost of one Check of a plain pod at restricted (four violations, their fields found), next
// to its peer, upstream's EvaluatePod alone, which finds the same violations without fields.
func BenchmarkCheck(b *testing.B) {
	meta, spec := busybox()
	b.Run("Check", func(b *testing.B) {
		for b.Loop() {
			Check(Restricted, meta, spec, "spec.template.")
		}
	})
	b.Run("upstream EvaluatePod", func(b *testing.B) {
		lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
		e := upstreamChecks().evaluator
		for b.Loop() {
			e.EvaluatePod(lv, meta, spec)
		}
	})
}

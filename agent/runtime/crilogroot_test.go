package runtime

import "testing"

// TestCRILogRootHook: a record's Log.Root other than log-dir passes only when it is the log directory the CRI
// client gave that very pod (Config.CRILogRoot); any other root, or another pod's, is foreign.
func TestCRILogRootHook(t *testing.T) {
	r := recordRuntime(t)
	cfg := madeConfig(t, r)
	roots := map[string]string{cfg.Pod.UID: "/var/log/pods/prod_web_x", "other-pod": "/etc"}
	r.cfg.CRILogRoot = func(uid string) (string, bool) { d, ok := roots[uid]; return d, ok }
	for _, tc := range []struct {
		name, root string
		ok         bool
	}{
		{"log-dir", r.cfg.LogDir, true},
		{"the pod's CRI log directory", "/var/log/pods/prod_web_x", true},
		{"another pod's", "/etc", false},
		{"anywhere else", "/var/log/pods/other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			c.Log.Root, c.Log.File = tc.root, "app/0.log"
			if err := r.checkConfig(c.ID, &c); (err == nil) != tc.ok {
				t.Errorf("checkConfig with log root %s = %v, want ok %v", tc.root, err, tc.ok)
			}
		})
	}
	roots[cfg.Pod.UID] = "/var/log/../etc" // never accepted unclean, whatever the hook says
	c := *cfg
	c.Log.Root, c.Log.File = "/var/log/../etc", "x.log"
	if err := r.checkConfig(c.ID, &c); err == nil {
		t.Errorf("checkConfig accepts an unclean CRI log root")
	}
}

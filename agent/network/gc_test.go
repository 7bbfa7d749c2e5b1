package network

import (
	"reflect"
	"testing"
)

func TestToCollect(t *testing.T) {
	found := map[string]*attachment{
		"c": {PodUID: "c", Reserved: []string{"10.0.0.3"}},
		"a": {PodUID: "a", Cached: true},
		"b": {PodUID: "b", MasqRules: 3},
		"k": {PodUID: "k", Cached: true, Reserved: []string{"10.0.0.2"}},
	}
	var asked []string
	got := toCollect(found, func(uid string) bool { asked = append(asked, uid); return uid == "k" })
	var uids []string
	for _, a := range got {
		uids = append(uids, a.PodUID)
	}
	if !reflect.DeepEqual(uids, []string{"a", "b", "c"}) {
		t.Errorf("toCollect = %v, want a b c: every pod keep rejects, sorted, whatever part of it is left", uids)
	}
	if len(asked) != 4 {
		t.Errorf("keep asked about %v, want each pod once", asked)
	}
	if got := toCollect(found, func(string) bool { return true }); len(got) != 0 {
		t.Errorf("toCollect with every pod kept = %v", got)
	}
}

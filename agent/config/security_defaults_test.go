package config

import (
	"path/filepath"
	"testing"
)

func TestSeccompDefaultAndPidsLimit(t *testing.T) {
	dir := setup(t)
	c := mustLoad(t)
	if !c.SeccompDefault || c.ContainerPidsLimit != DefaultContainerPidsLimit {
		t.Errorf("defaults: seccomp-default %v, container-pids-limit %d", c.SeccompDefault, c.ContainerPidsLimit)
	}
	c = mustLoad(t, "--seccomp-default=false", "--container-pids-limit", "-1")
	if c.SeccompDefault || c.ContainerPidsLimit != -1 {
		t.Errorf("flags: seccomp-default %v, container-pids-limit %d", c.SeccompDefault, c.ContainerPidsLimit)
	}
	file := filepath.Join(dir, "c.json")
	writeFile(t, file, `{"seccomp-default": false, "container-pids-limit": 100}`)
	c = mustLoad(t, "--config-file", file)
	if c.SeccompDefault || c.ContainerPidsLimit != 100 {
		t.Errorf("file: seccomp-default %v, container-pids-limit %d", c.SeccompDefault, c.ContainerPidsLimit)
	}
	// Neither is reloadable: containers started after a restart get the new values.
	_, needRestart := Diff(mustLoad(t), c)
	if len(needRestart) != 2 || needRestart[0].Key != "seccomp-default" || needRestart[1].Key != "container-pids-limit" {
		t.Errorf("Diff: %+v", needRestart)
	}

	for _, tc := range []struct{ content, want string }{
		{`{"container-pids-limit": 0}`, "container-pids-limit: 0 is not a positive number of processes, or -1 for no limit"},
		{`{"container-pids-limit": -2}`, "container-pids-limit: -2 is not a positive number"},
		{`{"container-pids-limit": 1.5}`, "container-pids-limit: want an integer, got 1.5"},
		{`{"container-pids-limit": "4096"}`, `container-pids-limit: want an integer, got "4096"`},
		{`{"seccomp-default": "no"}`, `seccomp-default: want true or false, got "no"`},
	} {
		writeFile(t, file, tc.content)
		_, err := Load([]string{"--config-file", file})
		wantErr(t, err, tc.want)
	}
	_, err := Load([]string{"--container-pids-limit", "many"})
	wantErr(t, err, "container-pids-limit")
}

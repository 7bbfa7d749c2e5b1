package config

import (
	"os"
	"testing"
)

func TestExampleFileUpToDate(t *testing.T) {
	got, err := os.ReadFile("../../manifests/config.example.json")
	if err != nil {
		t.Fatalf("%v (run `make docs`)", err)
	}
	if string(got) != Example {
		t.Error("manifests/config.example.json differs from config.Example: run `make docs`")
	}
}

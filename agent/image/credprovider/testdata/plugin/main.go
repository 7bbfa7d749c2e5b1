// Command plugin is a kubelet credential-provider plugin for the tests of
// package credprovider. Its environment (set through the provider's env in
// the test config) says what it does:
//
//	CREDP_COUNT     file to append one line to per run, before anything else
//	CREDP_MODE      ok (default), wait (read the FIFO CREDP_RELEASE to its end,
//	                then answer as ok), hang, fail, garbage
//	CREDP_RESPONSE  the response to print in mode ok, with $IMAGE replaced by
//	                the requested image
//	CREDP_ARGS      if set, the arguments it must have been given, space-joined
//
// It checks its request as kubelet's protocol defines it and fails on a bad one.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
)

type request struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Image      string `json:"image"`
}

func main() {
	if f := os.Getenv("CREDP_COUNT"); f != "" {
		fd, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fail("count: %v", err)
		}
		fmt.Fprintln(fd, os.Getpid())
		fd.Close()
	}
	if want, ok := os.LookupEnv("CREDP_ARGS"); ok && strings.Join(os.Args[1:], " ") != want {
		fail("args %q, want %q", os.Args[1:], want)
	}
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	var req request
	if err := dec.Decode(&req); err != nil {
		fail("request: %v", err)
	}
	if req.APIVersion != "credentialprovider.kubelet.k8s.io/v1" || req.Kind != "CredentialProviderRequest" || req.Image == "" {
		fail("bad request %+v", req)
	}
	switch os.Getenv("CREDP_MODE") {
	case "wait":
		// Opening a FIFO blocks until the test opens it for writing.
		b, err := os.ReadFile(os.Getenv("CREDP_RELEASE"))
		if err != nil {
			fail("release: %v (%d bytes)", err, len(b))
		}
		fmt.Print(strings.ReplaceAll(os.Getenv("CREDP_RESPONSE"), "$IMAGE", req.Image))
	case "", "ok":
		fmt.Print(strings.ReplaceAll(os.Getenv("CREDP_RESPONSE"), "$IMAGE", req.Image))
	case "hang":
		// Wait to be killed: pause returns only on a caught signal.
		for {
			syscall.Pause()
		}
	case "fail":
		fail("token endpoint said 403 for %s", req.Image)
	case "garbage":
		fmt.Print("Login Succeeded s3cr3t-garbage\n")
	default:
		fail("unknown CREDP_MODE")
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "plugin: "+format+"\n", args...)
	os.Exit(1)
}

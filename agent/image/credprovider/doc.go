// Package credprovider runs kubelet's exec credential-provider plugins
// (https://kubernetes.io/docs/tasks/administer-cluster/kubelet-credential-provider/)
// and offers their credentials to registry pulls as a go-containerregistry
// authn.Keychain.
//
// An operator configures it as kubelet's --image-credential-provider-config and
// --image-credential-provider-bin-dir: a CredentialProviderConfig file
// (apiVersion kubelet.config.k8s.io/v1, YAML or JSON, decoded strictly) and the
// directory that holds the plugin executables. For example, for Amazon ECR:
//
//	apiVersion: kubelet.config.k8s.io/v1
//	kind: CredentialProviderConfig
//	providers:
//	- name: ecr-credential-provider        # a file in the bin dir
//	  matchImages: ["*.dkr.ecr.*.amazonaws.com"]
//	  defaultCacheDuration: 12h
//	  apiVersion: credentialprovider.kubelet.k8s.io/v1
//	  args: ["get-credentials"]
//	  env: [{name: AWS_PROFILE, value: pulls}]
//
// A provider's name must be a plain file name inside the bin dir (no "/", no
// ".."): the config cannot make agentd run an arbitrary path. The plugin and the
// bin dir must not be writable by everyone. Only the v1 plugin API is spoken;
// tokenAttributes (service-account tokens) are refused, as static pods have no
// service accounts.
//
// For an image whose repository matches one of a provider's matchImages
// (kubelet's rules: "*" globs within one host label, an optional port that
// must match exactly, an optional path prefix), Resolve runs the plugin with a
// CredentialProviderRequest on stdin, the host's environment plus the
// provider's env, and a one-minute timeout, and reads a
// CredentialProviderResponse from stdout. Its credentials are cached per image,
// per registry or globally as its cacheKeyType says, for its cacheDuration or
// else the provider's defaultCacheDuration (0 means: do not cache); concurrent
// lookups of one image run the plugin once. Of the returned auth entries, the
// one whose key matches the image most specifically is used; an image no
// provider matches is pulled anonymously. Unlike kubelet, which logs a plugin
// failure and pulls anonymously, Resolve returns the failure when no other
// provider has credentials for the image, so that the pull reports it.
//
// Credentials are never logged and never put in errors: a response that does
// not decode is reported by the fields that are wrong, not by its text. An
// error does repeat the last 4 KiB of a failed plugin's stderr, as kubelet's
// do; a plugin must not print secrets there.
//
// The keychain is built once from the files (Load); its cache lives as long as
// it does, so a reload that builds a new one starts with an empty cache.
package credprovider

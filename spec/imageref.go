package spec

import "github.com/agentd-project/agentd/spec/imageref"

// IsImageReference returns why ref cannot be a container's image, or nothing
// when it can: see imageref.Check, which the image store applies to the names
// it imports too.
func IsImageReference(ref string) []string { return imageref.Check(ref) }

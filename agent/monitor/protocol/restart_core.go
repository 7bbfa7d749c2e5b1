package protocol

// WantsRestart says whether a container restarts after exit under policy.
func WantsRestart(policy string, exit *Exit) bool {
	switch policy {
	case RestartAlways, "":
		return true
	case RestartOnFailure:
		return exit == nil || exit.ExitCode != 0 || exit.Reason == ReasonStartError
	}
	return false
}

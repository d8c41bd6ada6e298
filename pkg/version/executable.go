package version

import (
	"fmt"
	"os"
)

// Executable identifies the running binary: the release and the executable file's size and
// modification time. Anything derived from talforge's own code (rendered configs, redaction)
// may be reused between runs of the same executable only; a rebuild or an upgrade changes the
// file, so a reuse keyed by Executable ends with it. "" when the file cannot be found, which
// means never reuse.
func Executable() string {
	path, err := os.Executable()
	if err != nil {
		return ""
	}

	st, err := os.Stat(path)
	if err != nil {
		return ""
	}

	return fmt.Sprintf("%s %s %d %d", Version, path, st.Size(), st.ModTime().UnixNano())
}

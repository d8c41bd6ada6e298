//go:build !unix && !windows

package runlock

import "os"

// tryLock: these platforms (js, wasip1, plan9) have no file locks talforge can use; runs are
// not kept apart there.
func tryLock(*os.File) (bool, error) { return true, nil }

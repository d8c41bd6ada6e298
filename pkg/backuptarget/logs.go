package backuptarget

import (
	"io"

	"github.com/sirupsen/logrus"
)

// QuietLogs silences logrus' standard logger, through which Longhorn's backupstore and
// its S3 driver log every config they load and every request that fails ("Loading config
// in backupstore", "Failed to list s3"): talforge reports what matters itself. The logger
// is process-wide, so this is the caller's decision (a CLI command calls it once before
// using this package); the package itself never changes it.
func QuietLogs() {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.PanicLevel)
}

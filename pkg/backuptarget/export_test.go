package backuptarget

// The object layout, for the tests in package backuptarget_test (which can import
// internal/testenv/lhdata; this package cannot, lhdata imports it).
var (
	BlockPath        = blockPath
	BackupConfigPath = backupConfigPath
	VolumeConfigPath = volumeConfigPath
)

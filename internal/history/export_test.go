package history

// EncodeForTest is appendRecord, for the tests of package history_test.
func EncodeForTest(r Record) []byte { return appendRecord(nil, r) }

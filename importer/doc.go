// Package importer streams CSV files of device identifiers into fallback
// jobs and publishes them to FALLBACK_JOBS. It backs `tsfallback import`
// and the sample import of `tsfallback demo`.
//
// # Input
//
// Each file starts with a header row that names its columns; the first row
// that is neither blank nor a comment is the header. Column names are
// matched ignoring case and every character that is not a letter or a
// digit, so "ICCID", "Sim ICCID", "sim_iccid" and "SIM-ICCID" are the same
// name. The accepted names, after that folding, are:
//
//	eid:     eid, eidnumber, esimeid, esimid, euicc, euiccid, euicceid
//	iccid:   iccid, iccidnumber, iccidno, sim, simiccid, simnumber,
//	         simcardnumber, simid
//	imei:    imei, imeinumber, imeino, deviceimei
//	account: account, accountname, accountnumber, accountid
//
// Other columns (notes, MDN, ...) are ignored. A header that names no
// identifier column, or names one kind twice, stops the import of that
// file with an error, as does a first row that looks like data.
//
// The reader accepts a UTF-8 byte order mark; LF, CRLF and bare CR line
// ends; comma, semicolon or tab separators (detected from the header line
// unless given: the one that occurs most often outside quotes, comma on a
// tie); quoted fields with doubled quotes; spaces around fields; blank rows
// (also rows of separators only); and comment rows whose first non-space
// character is '#'. A quoted field may span at most MaxRecordLines lines;
// one that stays open longer is reported as malformed and the lines it
// swallowed are read again as rows of their own, so a stray quote never
// hides the rest of a file. UTF-16 files are refused with a hint.
//
// # Rows
//
// Every identifier must be exact: model.ValidateEID, ValidateICCID and
// ValidateIMEI decide. A row with any bad identifier is rejected as a whole
// and each bad field is reported with its line, column, value and reason.
// Spreadsheet damage is named as such: scientific notation ("8.9148E+19"),
// digits replaced by zeros (a spreadsheet keeps 15 significant digits), a
// ".0" suffix, and lost leading zeros (an IMEI may start with 0; EIDs and
// ICCIDs start with 89, so for them a short value is just too short).
//
// The account comes from the account column or Options.Account. When both
// are present and differ, the row is rejected: an operator who names an
// account on the command line for a file that says otherwise has most
// likely picked the wrong file, and guessing would send devices to the
// wrong account. An empty account cell takes Options.Account.
//
// A row whose identifiers all belong to one device accepted earlier in the
// run (the same device again, perhaps with fewer or more cells filled in)
// is a duplicate: it is not published again, it is counted, and every such
// row is reported once, with the line of the first sighting. Duplicates do
// not change the exit code. A duplicate that fills in a kind of identifier
// the device lacked does not send it (the device went out as first seen),
// but from then on that identifier stands for the device: a later row
// with it alone is a duplicate too, not a second device. A row that shares an identifier with an
// earlier device but gives another value for a kind of identifier that
// device has, or shares identifiers with two earlier devices, is a
// conflict: the file gives one identifier to two devices, so the row is
// rejected (code conflicting_rows) and the first device stands.
// Limitation: the check does not keep accounts, so a device listed again
// under another account is a duplicate, published for the first account
// only (its report line names the first sighting).
// The check holds at most Config.DedupMemoryMB in memory and spills the
// rest of its set to an unlinked temporary file (see seenSet), so that
// memory stays flat whatever the input's size.
//
// # Jobs
//
// Good rows are grouped per account into jobs of at most Options.JobSize
// devices, with ids "<runId>-<n>", n counting from 1 in input order. The
// same input and run id give the same job ids, so a re-run after a failure
// re-publishes them under the same Nats-Msg-Id: a no-op inside the stream's
// duplicate window, and the worker's journal skips what it already sent.
package importer

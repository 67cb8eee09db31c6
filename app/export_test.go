package app

// RedactURL is redactURL, for the tests of package app_test.
var RedactURL = redactURL

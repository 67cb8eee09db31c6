package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// secretPrefix marks Standard Webhooks secrets.
const secretPrefix = "whsec_"

// newSecret returns a fresh signing secret: whsec_ and 32 random bytes in
// base64, the form the Standard Webhooks libraries take.
func newSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

// sign returns the Standard Webhooks signature of one message under each
// secret: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>", space
// separated when there are several (during a rotation's grace period).
func sign(secrets []string, msgID string, ts int64, body []byte) string {
	var out []string
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
		if err != nil {
			continue
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(msgID))
		mac.Write([]byte{'.'})
		mac.Write([]byte(strconv.FormatInt(ts, 10)))
		mac.Write([]byte{'.'})
		mac.Write(body)
		out = append(out, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(out, " ")
}

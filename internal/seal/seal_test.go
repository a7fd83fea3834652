package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestRoundTrip(t *testing.T) {
	k, err := ParseKeys(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "", "with\nnewline and \xff bytes", strings.Repeat("x", 5000)} {
		v := k.Seal("wh-1", []byte(secret))
		if !Sealed(v) || strings.Contains(v, secret) && secret != "" {
			t.Fatalf("sealed %q as %q", secret, v)
		}
		got, err := k.Open("wh-1", v)
		if err != nil || !bytes.Equal(got, []byte(secret)) {
			t.Errorf("Open = %q, %v; want %q", got, err, secret)
		}
	}
	if a, b := k.Seal("wh", []byte("x")), k.Seal("wh", []byte("x")); a == b {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
}

func TestOpenRefuses(t *testing.T) {
	k, _ := ParseKeys(newKey(t))
	other, _ := ParseKeys(newKey(t))
	v := k.Seal("wh-1", []byte("s3cret"))
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, Prefix))
	raw[len(raw)-1] ^= 1
	tampered := Prefix + base64.StdEncoding.EncodeToString(raw)

	for _, tc := range []struct {
		name  string
		keys  *Keys
		id    string
		value string
		want  error
	}{
		{"moved to another webhook", k, "wh-2", v, ErrOpen},
		{"tampered", k, "wh-1", tampered, ErrOpen},
		{"wrong key", other, "wh-1", v, ErrOpen},
		{"not base64", k, "wh-1", Prefix + "!!!", ErrOpen},
		{"too short", k, "wh-1", Prefix + "AAAA", ErrOpen},
		{"no key configured", nil, "wh-1", v, ErrNoKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.keys.Open(tc.id, tc.value); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPlainValuesPassThrough(t *testing.T) {
	for _, k := range []*Keys{nil, must(ParseKeys(newKey(t)))} {
		if got, err := k.Open("wh", "plain-secret"); err != nil || string(got) != "plain-secret" {
			t.Errorf("Open(plain) = %q, %v", got, err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKeyS := newKey(t), newKey(t)
	old, _ := ParseKeys(oldKey)
	v := old.Seal("wh", []byte("s3cret"))
	both, err := ParseKeys(newKeyS, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := both.Open("wh", v); err != nil || string(got) != "s3cret" {
		t.Errorf("a value sealed with the older key: %q, %v", got, err)
	}
	resealed := both.Seal("wh", []byte("s3cret"))
	if _, err := old.Open("wh", resealed); err == nil {
		t.Error("the older key opened a value sealed after rotation: the first key must seal")
	}
}

func TestParseKeys(t *testing.T) {
	if k, err := ParseKeys(); k != nil || err != nil {
		t.Errorf("no keys: %v, %v", k, err)
	}
	if k, err := ParseKeys("", ""); k != nil || err != nil {
		t.Errorf("empty keys: %v, %v", k, err)
	}
	for _, bad := range []string{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), "!!notbase64!!"} {
		_, err := ParseKeys(bad)
		if err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("ParseKeys(%q): err %v: want an error that does not repeat the key", bad, err)
		}
	}
}

func must(k *Keys, err error) *Keys {
	if err != nil {
		panic(err)
	}
	return k
}

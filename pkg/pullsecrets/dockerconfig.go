package pullsecrets

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The types and functions in this file decode docker configs exactly as the kubelet does:
// k8s.io/kubernetes pkg/credentialprovider/config.go (DockerConfigJSON, DockerConfig,
// DockerConfigEntry.UnmarshalJSON, decodeDockerConfigFieldAuth) and
// pkg/credentialprovider/secrets/secrets.go (secretsToTrackedDockerConfigs). They use the
// same encoding/json calls on the same struct shapes, so that what fails to decode there
// (a non-string field, an "auth" that is not base64 of "user:password", an HttpHeaders that
// is not a map of strings) fails here too, and what decodes there decodes to the same
// entries here. Fields the kubelet does not read (identitytoken, registrytoken) are not
// read here either.

// dockerConfigJSON is a kubernetes.io/dockerconfigjson secret's .dockerconfigjson:
// credentialprovider.DockerConfigJSON.
type dockerConfigJSON struct {
	Auths dockerConfig `json:"auths"`
	// HTTPHeaders is never used, but it is decoded: a value that is not a map of strings
	// fails the whole config for the kubelet, so it must here.
	HTTPHeaders map[string]string `json:"HttpHeaders,omitempty"`
}

// dockerConfig is a kubernetes.io/dockercfg secret's .dockercfg, and the "auths" of a
// .dockerconfigjson: credentialprovider.DockerConfig.
type dockerConfig map[string]dockerConfigEntry

// dockerConfigEntry is one registry's credentials: credentialprovider.DockerConfigEntry
// without its Provider, which secrets never set.
type dockerConfigEntry struct {
	Username string
	Password string
	Email    string
}

// dockerConfigEntryWithAuth is what an entry is decoded through:
// credentialprovider.dockerConfigEntryWithAuth.
type dockerConfigEntryWithAuth struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// UnmarshalJSON follows credentialprovider.DockerConfigEntry.UnmarshalJSON: an "auth"
// field, when present, replaces username and password, and one that does not decode fails
// the entry, and with it the whole config.
func (e *dockerConfigEntry) UnmarshalJSON(data []byte) error {
	var tmp dockerConfigEntryWithAuth
	if err := json.Unmarshal(data, &tmp); err != nil {
		return err
	}
	e.Username = tmp.Username
	e.Password = tmp.Password
	e.Email = tmp.Email
	if len(tmp.Auth) == 0 {
		return nil
	}
	var err error
	e.Username, e.Password, err = decodeDockerConfigFieldAuth(tmp.Auth)
	return err
}

// errAuthField is decodeDockerConfigFieldAuth's error for a decoded auth without a colon.
var errAuthField = errors.New("unable to parse auth field, must be formatted as base64(username:password)")

// decodeDockerConfigFieldAuth is credentialprovider.decodeDockerConfigFieldAuth: padded
// base64 when the (trimmed) field ends in "=", unpadded otherwise, then "user:password".
func decodeDockerConfigFieldAuth(field string) (username, password string, err error) {
	var decoded []byte
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		decoded, err = base64.StdEncoding.DecodeString(field)
	} else {
		decoded, err = base64.RawStdEncoding.DecodeString(field)
	}
	if err != nil {
		return "", "", err
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", errAuthField
	}
	return user, pass, nil
}

// dockerConfigOf returns the docker config of a pull secret as the kubelet reads it, and
// whether the kubelet reads the secret at all (secretsToTrackedDockerConfigs): a
// kubernetes.io/dockerconfigjson secret with a non-empty .dockerconfigjson, or a
// kubernetes.io/dockercfg secret with a non-empty .dockercfg. Any other secret is ignored by
// the kubelet without a word. A config that does not decode is an error; the kubelet then
// builds no keyring for the pod and fails every pull (pkg/kubelet/images/image_manager.go,
// makeLookupPullCredentialsFunc). The error never quotes the config.
func dockerConfigOf(secret *corev1.Secret) (cfg dockerConfig, read bool, err error) {
	if data, ok := secret.Data[corev1.DockerConfigJsonKey]; secret.Type == corev1.SecretTypeDockerConfigJson && ok && len(data) > 0 {
		var cfgJSON dockerConfigJSON
		if err := json.Unmarshal(data, &cfgJSON); err != nil {
			return nil, true, redact(err)
		}
		return cfgJSON.Auths, true, nil
	}
	if data, ok := secret.Data[corev1.DockerConfigKey]; secret.Type == corev1.SecretTypeDockercfg && ok && len(data) > 0 {
		var cfg dockerConfig
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, true, redact(err)
		}
		return cfg, true, nil
	}
	return nil, false, nil
}

// redact keeps what kind of error a decoding error is and drops its text: encoding/json's
// syntax errors and base64's errors name offsets only, but an UnmarshalTypeError names a
// field, and a future error might quote a value.
func redact(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var b64 base64.CorruptInputError
	switch {
	case errors.As(err, &syntax):
		return errors.New("it is not valid JSON")
	case errors.As(err, &typ):
		return errors.New("a field has the wrong JSON type (every field of an entry is a string)")
	case errors.As(err, &b64):
		return errors.New(`an "auth" field is not valid base64`)
	case errors.Is(err, errAuthField):
		return errors.New(`an "auth" field does not decode to "username:password"`)
	}
	return errors.New("it does not decode as a docker config")
}

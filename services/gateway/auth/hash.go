package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// HashPassword returns password's bcrypt hash, for a user's passwordHash.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty password", ErrInvalidConfig)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidConfig, err) // longer than bcrypt's 72 bytes
	}
	return string(h), nil
}

// HashToken returns token's digest, for a token's hash: "sha256:<hex>".
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewToken returns a new random bearer token: "sluice_" and 256 random
// bits, URL-safe, so that a secret scanner can recognize it.
func NewToken() string { return "sluice_" + randomToken() }

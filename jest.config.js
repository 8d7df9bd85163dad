/** Jest runs the TypeScript tests directly through ts-jest; real-program judges (openssl, certtool, gnutls) are spawned by the tests. */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/tests"],
  testMatch: ["**/*.test.ts"],
  testTimeout: 120000,
  // Fixture dynamic providers are serialized by Pulumi: coverage counters must not leak into them.
  coveragePathIgnorePatterns: ["/node_modules/", "/tests/fixtures/"],
  // The examples import the package by name, as users do: in tests that is the compiled build.
  moduleNameMapper: { "^pulumi-virt-pki$": "<rootDir>/bin/index.js" },
  transform: {
    "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.test.json" }],
  },
};

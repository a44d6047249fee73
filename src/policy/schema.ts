// The structure of a policy file as JSON Schema: types, required fields and unknown keys.
// Semantic checks (host patterns, CIDRs, paths) live in validate.ts.

const l7Rule = {
  type: 'object',
  additionalProperties: false,
  required: ['method', 'path'],
  properties: { method: { type: 'string' }, path: { type: 'string' } },
} as const;

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;

export const endpointSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    host: { type: 'string' },
    port,
    ports: { type: 'array', minItems: 1, items: port },
    protocol: { enum: ['rest'] },
    tls: { enum: ['inspect', 'passthrough'] },
    enforcement: { enum: ['enforce', 'audit'] },
    access: { enum: ['read-only', 'read-write', 'full'] },
    rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['allow'],
        properties: { allow: l7Rule },
      },
    },
    deny_rules: { type: 'array', items: l7Rule },
    allowed_ips: { type: 'array', minItems: 1, items: { type: 'string' } },
    credentials: { type: 'array', minItems: 1, items: { type: 'string' } },
    allow_cleartext_credentials: { type: 'boolean' },
    credentials_in_body: { type: 'boolean' },
  },
} as const;

/** A credential: where its value is read from (validated in validate.ts). */
export const credentialSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['from'],
  properties: { from: { type: 'string' } },
} as const;

export const policySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['endpoints'],
  properties: {
    name: { type: 'string', minLength: 1 },
    endpoints: { type: 'array', items: endpointSchema },
    binaries: {
      type: ['array', 'null'],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['path'],
        properties: { path: { type: 'string' } },
      },
    },
  },
} as const;

export const policyFileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'network_policies'],
  properties: {
    version: { const: 1 },
    credentials: {
      type: ['object', 'null'],
      propertyNames: { minLength: 1 },
      additionalProperties: credentialSchema,
    },
    network_policies: {
      type: ['object', 'null'],
      propertyNames: { minLength: 1 },
      additionalProperties: policySchema,
    },
  },
} as const;

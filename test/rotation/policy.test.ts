import type { KeyRotationPolicy, KeyRotationPolicyProperties } from '@azure/keyvault-keys';
import test from 'ava';
import { RotationPolicyFormatError } from '../../src/errors.js';
import {
  findAction,
  fromSdk,
  fromServiceJson,
  parseActionType,
  parseRotationPolicy,
  type RotationPolicy,
  toSdk,
  toServiceJson,
} from '../../src/rotation/policy.js';

/** The documented example (DESIGN.md section 6, Key Vault docs). */
const documentedJson = {
  lifetimeActions: [
    { trigger: { timeAfterCreate: 'P18M' }, action: { type: 'Rotate' } },
    { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } },
  ],
  attributes: { expiryTime: 'P2Y' },
};
const documentedSdk: KeyRotationPolicyProperties = {
  lifetimeActions: [
    { action: 'Rotate', timeAfterCreate: 'P18M' },
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ],
  expiresIn: 'P2Y',
};
const documentedModel: RotationPolicy = {
  lifetimeActions: [
    { action: 'Rotate', timeAfterCreate: 'P18M' },
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ],
  expiryTime: 'P2Y',
};

test('documented example: service JSON -> model -> service JSON is identical', (t) => {
  const model = fromServiceJson(structuredClone(documentedJson));
  t.deepEqual(model, documentedModel);
  t.deepEqual(toServiceJson(model), documentedJson);
  t.is(JSON.stringify(toServiceJson(model)), JSON.stringify(documentedJson));
});

test('documented example: SDK -> model -> SDK, and across shapes', (t) => {
  const model = fromSdk(documentedSdk);
  t.deepEqual(model, documentedModel);
  t.deepEqual(toSdk(model), documentedSdk);
  t.deepEqual(toSdk(fromServiceJson(documentedJson)), documentedSdk);
  t.deepEqual(toServiceJson(fromSdk(documentedSdk)), documentedJson);
});

test('service response form: id and Unix-second timestamps', (t) => {
  const response = {
    id: 'https://myvault.vault.azure.net/keys/rotationkey/rotationpolicy',
    lifetimeActions: documentedJson.lifetimeActions,
    attributes: { expiryTime: 'P2Y', created: 1482188947, updated: 1482188948 },
  };
  const model = fromServiceJson(response);
  t.is(model.id, response.id);
  t.is(model.createdOn?.toISOString(), '2016-12-19T23:09:07.000Z');
  t.is(model.updatedOn?.toISOString(), '2016-12-19T23:09:08.000Z');
  t.deepEqual(toServiceJson(model, { includeMetadata: true }), response);
  t.is(JSON.stringify(toServiceJson(model, { includeMetadata: true })), JSON.stringify(response));
  // a PUT body carries only the writable fields
  t.deepEqual(toServiceJson(model), documentedJson);
});

test('SDK KeyRotationPolicy read-only fields are kept', (t) => {
  const created = new Date('2024-01-01T00:00:00Z');
  const sdk: KeyRotationPolicy = {
    ...documentedSdk,
    id: 'https://v/keys/k/rotationpolicy',
    createdOn: created,
  };
  const model = fromSdk(sdk);
  t.is(model.id, 'https://v/keys/k/rotationpolicy');
  t.is(model.createdOn?.getTime(), created.getTime());
  t.false('id' in toSdk(model));
});

test('action types compare case-insensitively and come out canonical', (t) => {
  const model = fromServiceJson({
    lifetimeActions: [
      { trigger: { timeAfterCreate: 'P90D' }, action: { type: 'rotate' } },
      { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'NOTIFY' } },
    ],
    attributes: { expiryTime: 'P1Y' },
  });
  t.deepEqual(
    model.lifetimeActions.map((a) => a.action),
    ['Rotate', 'Notify'],
  );
  t.deepEqual(
    toServiceJson(model).lifetimeActions.map((a) => a.action.type),
    ['Rotate', 'Notify'],
  );
  t.is(parseActionType('ROTATE'), 'Rotate');
  t.is(findAction(model, 'Notify')?.timeBeforeExpiry, 'P30D');
  const lower = fromSdk({ lifetimeActions: [{ action: 'notify' as 'Notify', timeBeforeExpiry: 'P7D' }] });
  t.is(lower.lifetimeActions[0]?.action, 'Notify');
});

test('az output shape: flat actions, nulls, expiresIn beside attributes, ISO timestamps', (t) => {
  const az = {
    attributes: { created: '2024-05-01T10:00:00+00:00', expiryTime: 'P2Y', updated: null },
    expiresIn: 'P2Y',
    id: 'https://v.vault.azure.net/keys/k/rotationpolicy',
    lifetimeActions: [
      { action: 'Rotate', timeAfterCreate: 'P18M', timeBeforeExpiry: null },
      { action: 'Notify', timeAfterCreate: null, timeBeforeExpiry: 'P30D' },
    ],
  };
  const model = parseRotationPolicy(az);
  t.deepEqual(model.lifetimeActions, documentedModel.lifetimeActions);
  t.is(model.expiryTime, 'P2Y');
  t.is(model.createdOn?.toISOString(), '2024-05-01T10:00:00.000Z');
  t.is(model.updatedOn, undefined);
});

test('empty and absent parts', (t) => {
  t.deepEqual(parseRotationPolicy({}), { lifetimeActions: [] });
  t.deepEqual(toServiceJson({ lifetimeActions: [] }), { lifetimeActions: [], attributes: {} });
  t.deepEqual(toSdk({ lifetimeActions: [] }), { lifetimeActions: [] });
  t.deepEqual(parseRotationPolicy({ lifetimeActions: null, attributes: { expiryTime: null } }), {
    lifetimeActions: [],
  });
});

test('malformed documents throw RotationPolicyFormatError naming the field', (t) => {
  const cases: Array<[unknown, string]> = [
    [null, 'policy'],
    [[], 'policy'],
    ['{}', 'policy'],
    [{ lifetimeActions: {} }, 'lifetimeActions'],
    [{ lifetimeActions: [1] }, 'lifetimeActions[0]'],
    [{ lifetimeActions: [{ action: { type: 'Delete' }, trigger: {} }] }, 'lifetimeActions[0].action.type'],
    [{ lifetimeActions: [{ action: { type: 7 }, trigger: {} }] }, 'lifetimeActions[0].action.type'],
    [{ lifetimeActions: [{ action: 'Purge' }] }, 'lifetimeActions[0].action'],
    [{ lifetimeActions: [{ action: { type: 'Rotate' }, trigger: [] }] }, 'lifetimeActions[0].trigger'],
    [
      { lifetimeActions: [{ action: { type: 'Rotate' }, trigger: { timeAfterCreate: 90 } }] },
      'lifetimeActions[0].trigger.timeAfterCreate',
    ],
    [{ attributes: 'P2Y' }, 'attributes'],
    [{ attributes: { expiryTime: 730 } }, 'attributes.expiryTime'],
    [{ attributes: { expiryTime: 'P2Y' }, expiresIn: 'P1Y' }, 'expiresIn'],
    [{ attributes: { created: 'yesterday' } }, 'attributes.created'],
    [{ id: 5 }, 'id'],
    [{ lifetimeActions: new Array(65).fill({ action: 'Rotate' }) }, 'lifetimeActions'],
  ];
  for (const [input, field] of cases) {
    const error = t.throws(
      () => parseRotationPolicy(input),
      { instanceOf: RotationPolicyFormatError },
      field,
    );
    t.is(error?.field, field, JSON.stringify(input)?.slice(0, 80));
    t.is(error?.code, 'ERR_ROTATION_POLICY_FORMAT');
  }
});

test('durations are kept verbatim so invalid ones reach validation', (t) => {
  const model = parseRotationPolicy({
    lifetimeActions: [{ trigger: { timeAfterCreate: 'eighteen months' }, action: { type: 'Rotate' } }],
  });
  t.is(model.lifetimeActions[0]?.timeAfterCreate, 'eighteen months');
});

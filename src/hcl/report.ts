import { MalformedDataError } from '../errors.js';
import { parseSnpReport, SNP_REPORT_SIZE, type SnpReport } from '../snp/report.js';
import { type HclRuntimeData, parseHclRuntimeData } from './runtime-data.js';

export const HCL_SIGNATURE = 0x414c4348; // "HCLA"
const HW_REPORT_OFFSET = 0x20;
const IGVM_OFFSET = 0x4c0;
const IGVM_HEADER_SIZE = 20;
const RUNTIME_OFFSET = IGVM_OFFSET + IGVM_HEADER_SIZE;
/** TDREPORT_STRUCT: REPORTMACSTRUCT.reportdata sits at offset 128. */
const TDX_REPORT_DATA_OFFSET = 128;

export type HclReportType = 'snp' | 'tvm' | 'tdx';
export type HclHashType = 'sha256' | 'sha384' | 'sha512';

const REPORT_TYPES: Record<number, HclReportType> = { 2: 'snp', 3: 'tvm', 4: 'tdx' };
const HASH_TYPES: Record<number, HclHashType> = { 1: 'sha256', 2: 'sha384', 3: 'sha512' };

/** An Azure HCL report: the NV blob of vTPM index 0x01400001. */
export interface HclReport {
  version: number;
  reportSize: number;
  /** 1 key release, 2 AK certificate. */
  requestType: number;
  status: number;
  reportType: HclReportType;
  hashType: HclHashType;
  /** The 1184-byte hardware report area (SNP report; TDREPORT padded for TDX). */
  hardwareReport: Uint8Array;
  /** The parsed SNP report, for report type SNP. */
  snpReport?: SnpReport;
  /** report_data of the hardware report (SNP and TDX). */
  reportData?: Uint8Array;
  /** Runtime data as bytes (the hashed input of the binding) and parsed. */
  runtimeDataBytes: Uint8Array;
  runtimeData: HclRuntimeData;
  raw: Uint8Array;
}

function fail(message: string): never {
  throw new MalformedDataError('ERR_HCL_REPORT_MALFORMED', `HCL report: ${message}`);
}

/** Whether bytes start like an HCL report (the "HCLA" signature). */
export function isHclReport(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0x48 && bytes[1] === 0x43 && bytes[2] === 0x4c && bytes[3] === 0x41
  );
}

/**
 * Parses an HCL report (header versions 1 and 2; SNP, TVM and TDX hardware reports). For SNP the embedded report is
 * parsed too. Throws a `MalformedDataError` (`ERR_HCL_REPORT_MALFORMED`, or `ERR_SNP_REPORT_MALFORMED` for the
 * embedded report); never reads outside `bytes`. TDX is parsed for its header and runtime data only: TDX quotes
 * are not verified by this library.
 */
export function parseHclReport(bytes: Uint8Array): HclReport {
  if (!(bytes instanceof Uint8Array)) fail('expected bytes');
  if (bytes.length < RUNTIME_OFFSET)
    fail(`${bytes.length} bytes is shorter than the ${RUNTIME_OFFSET}-byte fixed part`);
  const b = new Uint8Array(bytes);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u32 = (o: number): number => view.getUint32(o, true);
  if (u32(0) !== HCL_SIGNATURE) fail('does not start with "HCLA"');
  const version = u32(4);
  if (version !== 1 && version !== 2) fail(`header version ${version} is not supported (1 or 2)`);
  const reportSize = u32(8);
  const requestType = u32(0x0c);
  const status = u32(0x10);

  const dataSize = u32(IGVM_OFFSET);
  const reportTypeCode = u32(IGVM_OFFSET + 8);
  const hashTypeCode = u32(IGVM_OFFSET + 12);
  const variableSize = u32(IGVM_OFFSET + 16);
  const reportType = REPORT_TYPES[reportTypeCode];
  if (reportType === undefined) fail(`report type ${reportTypeCode} is unknown (2 SNP, 3 TVM, 4 TDX)`);
  const hashType = HASH_TYPES[hashTypeCode];
  if (hashType === undefined) fail(`report-data hash type ${hashTypeCode} is unknown (1, 2, 3)`);
  if (variableSize > b.length - RUNTIME_OFFSET) {
    fail(`runtime data of ${variableSize} bytes runs past the end (${b.length - RUNTIME_OFFSET} available)`);
  }
  if (dataSize !== IGVM_HEADER_SIZE + variableSize) {
    fail(`IGVM request data size ${dataSize} is not ${IGVM_HEADER_SIZE} + runtime data size ${variableSize}`);
  }
  if (reportSize < RUNTIME_OFFSET + variableSize || reportSize > b.length) {
    fail(`report size ${reportSize} does not cover the runtime data or exceeds the ${b.length} bytes given`);
  }

  const runtimeDataBytes = b.subarray(RUNTIME_OFFSET, RUNTIME_OFFSET + variableSize);
  const hardwareReport = b.subarray(HW_REPORT_OFFSET, HW_REPORT_OFFSET + SNP_REPORT_SIZE);
  const report: HclReport = {
    version,
    reportSize,
    requestType,
    status,
    reportType,
    hashType,
    hardwareReport,
    runtimeDataBytes,
    runtimeData: parseHclRuntimeData(runtimeDataBytes),
    raw: b,
  };
  if (reportType === 'snp') {
    report.snpReport = parseSnpReport(hardwareReport);
    report.reportData = report.snpReport.reportData;
  } else if (reportType === 'tdx') {
    report.reportData = hardwareReport.subarray(TDX_REPORT_DATA_OFFSET, TDX_REPORT_DATA_OFFSET + 64);
  }
  return report;
}
